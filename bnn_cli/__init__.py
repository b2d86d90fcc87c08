"""bnn: Bayesian neural network experiments on PyMC, from the command line."""

__version__ = "0.1.0"
