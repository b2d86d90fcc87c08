"""The ELBO with its KL term in closed form, as a PyMC operator on the same mean-field
approximation: `AnalyticKL` (`inference.kl: analytic`).

PyMC's `KLqp` estimates the whole KL by Monte Carlo, `log q(w) - log p(w)` at the step's one
weight draw: for the 800x800 MLP 1.3 million noisy terms in every scale's gradient. For a
Normal prior whose parameters are constants the KL of the mean-field posterior has a closed
form, read here from the model's own random variables (`pm.Normal(name, mu, sigma)`); every
other variable (a hierarchical prior's scales) keeps PyMC's sampled term at the same draw as the
likelihood. The objective is scaled as PyMC scales the ELBO, the KL weighted by `beta` as a
tempered `KLqp` weights it.

Two hyperpriors are integrated out of the bound in closed form (the collapsed bounds of
Tomczak, Swaroop, Foong & Turner, NeurIPS 2021):

- `alpha` < 1: each weight's prior mean m ~ N(0, v (1 - alpha) / alpha) around the model's
  N(0, v): the KL's mean term becomes alpha mu^2 / (2 v), so the means may roam while v still
  bounds the scales, plus the constant -log(alpha) / 2;
- a collapsed hyperprior (`models.priors.collapsed_posterior`): per group of weights one
  variance v ~ InvGamma(a, a v0), integrated out: the group's term is
  sum(-log(sigma^2) / 2 - 1/2 - log(alpha) / 2) - a log(a v0) + lgamma(a) - lgamma(A) + A log(B)
  with the posterior's shape A = a + n / 2 and rate B = a v0 + sum(sigma^2 + alpha mu^2) / 2.
"""

from __future__ import annotations

import math
from typing import Any

import pymc as pm
import pytensor
import pytensor.tensor as pt
from pytensor.graph.replace import graph_replace
from pytensor.graph.traversal import ancestors
from pytensor.tensor.random.basic import NormalRV
from pytensor.tensor.special import Softmax

from bnn_cli import seeds
from bnn_cli.config import Config, ModelConfig, PriorConfig
from bnn_cli.models.architecture import ParamSpec, forward, param_specs
from bnn_cli.models.build import IMAGES_BATCH
from bnn_cli.models.layers import Gaussian
from bnn_cli.models.priors import collapsed_posterior, is_collapsed, resolve_sd, scale_shape

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class AnalyticKL(pm.operators.KL):
    """-(E_q log p(data | w) - beta KL(q || p)) with the KL in closed form where the prior is
    a Normal of constants (and collapsed where asked), sampled elsewhere."""

    def __init__(
        self,
        approx: Any,
        beta: Any = 1.0,
        alpha: float = 1.0,
        collapsed: dict[str, tuple[ParamSpec, PriorConfig]] | None = None,
        local: tuple[ModelConfig, int] | None = None,
    ) -> None:
        super().__init__(approx, beta=beta)
        self.alpha = alpha
        self.collapsed = collapsed or {}
        self.local = local

    def apply(self, f: Any) -> Any:
        scale = self.approx.symbolic_normalizing_constant
        kl = kl_term(self.approx, self.alpha, self.collapsed)
        if self.local is None:
            return -self.datalogp_norm + self.beta * kl / scale
        return -(local_datalogp(self.approx, *self.local) - self.beta * kl) / scale


def kl_term(approx: Any, alpha: float = 1.0, collapsed: dict | None = None) -> Any:
    """KL(q || p) of the whole approximation: closed-form terms for the Normal priors of
    constants (`collapsed` names those whose variance is integrated out, with their tensor's
    spec and prior), plus the sampled `log q - log p` of every other variable at the draw the
    likelihood sees."""
    collapsed = collapsed or {}
    model = approx.model
    (group,) = approx.groups
    closed, sampled = [], []
    for rv in model.free_RVs:
        name = model.rvs_to_values[rv].name
        m, s = tensor_posterior(group, name)
        if name in collapsed:
            spec, prior = collapsed[name]
            closed.append(collapsed_kl(spec, prior, m, s))
        elif normal_of_constants(rv, model):
            loc, scale = rv.owner.op.dist_params(rv.owner)
            closed.append(gaussian_kl(m, s, loc, scale, alpha))
        else:
            sampled.append((rv, group.ordering[name][1]))
    return pt.add(*closed, sampled_kl(approx, sampled)) if closed else sampled_kl(approx, sampled)


def normal_of_constants(rv: Any, model: Any) -> bool:
    """A Normal whose mean and sd depend on no other variable of the model."""
    if not isinstance(rv.owner.op, NormalRV):
        return False
    params = rv.owner.op.dist_params(rv.owner)
    variables = {*model.free_RVs, *model.value_vars}
    return not any(node in variables for node in ancestors(params))


def gaussian_kl(mu: Any, sigma: Any, loc: Any, scale: Any, alpha: float = 1.0) -> Any:
    """sum KL(N(mu, sigma^2) || N(loc, scale^2)), the mean's term weighted by alpha (the
    collapsed hyperprior on the prior mean, with its constant)."""
    var = scale**2
    terms = pt.log(scale / sigma) + (sigma**2 + alpha * (mu - loc) ** 2) / (2 * var) - 0.5
    return terms.sum() - 0.5 * math.log(alpha) * terms.size


def collapsed_kl(spec: ParamSpec, prior: PriorConfig, mu: Any, sigma: Any) -> Any:
    """The tensor's KL under the collapsed hyperpriors (this module's docstring), summed over
    its groups."""
    shape, rate = collapsed_posterior(spec, prior, mu, sigma)
    a = prior.hyper_shape
    v0 = resolve_sd(prior.hyper_sd, prior.gain, spec.fan_in) ** 2
    n_groups = math.prod(scale_shape(spec, prior.scale_per))
    entropy = (-pt.log(sigma) - 0.5 - 0.5 * math.log(prior.alpha)).sum()
    # A log(B) and lgamma(A) are each millions for a large layer; written as A log(B / A) and
    # a constant taken in float64 they cancel before the float32 graph sees them.
    constant = shape * math.log(shape) - math.lgamma(shape) - a * math.log(a * v0) + math.lgamma(a)
    return entropy + n_groups * constant + (shape * pt.log(rate / shape)).sum()


def sampled_kl(approx: Any, variables: list) -> Any:
    """log q - log p (with the log-transform's Jacobian) of `variables` [(rv, flat slice)] at
    the step's single draw, as PyMC's KLqp estimates the whole KL."""
    if not variables:
        return pt.constant(0.0, dtype=approx.groups[0].mean.dtype)
    (group,) = approx.groups
    z = group.symbolic_initial[0]
    log_sigma = pt.log(group.std)
    logq = sum(
        (-0.5 * z[where] ** 2 - HALF_LOG_2PI - log_sigma[where]).sum() for _, where in variables
    )
    logp = approx.model.logp(vars=[rv for rv, _ in variables], jacobian=True)
    return logq - approx.symbolic_single_sample(logp)


def bound_of(config: Config) -> dict:
    """`AnalyticKL`'s settings for this config: alpha, the tensors whose variance the
    collapsed hyperprior integrates out (with their spec and prior), and for per-image noise
    (`inference.gradient: local`) the network and the seed of its noise."""
    prior = config.prior
    specs = param_specs(config.model)
    collapsed = {spec.name: (spec, prior) for spec in specs} if is_collapsed(prior) else {}
    local = (config.model, config.seed) if config.inference.gradient == "local" else None
    return {"alpha": prior.alpha if not collapsed else 1.0, "collapsed": collapsed, "local": local}


class NoiseStream:
    """Standard normals for the per-image noise, one seeded generator threaded from draw to
    draw (PyMC's compile turns the chain into the generator's update)."""

    def __init__(self, seed: int) -> None:
        self.rng = pytensor.shared(seeds.stream(seed, seeds.LOCAL_NOISE))

    def __call__(self, shape: tuple[int, ...]) -> Any:
        draw = pt.random.normal(0.0, 1.0, size=shape, rng=self.rng, dtype=pytensor.config.floatX)
        self.rng = draw.owner.outputs[0]
        return draw


def local_datalogp(approx: Any, model_config: ModelConfig, seed: int) -> Any:
    """The likelihood's term with per-image noise: the model's own observed variable and its
    total_size scaling, its logits replaced by the same network fed each tensor's mean-field
    Gaussian (`models.layers.Gaussian`), so every image draws its pre-activations from their
    exact marginal instead of all images sharing one weight draw."""
    model = approx.model
    (obs,) = model.observed_RVs
    logp = pm.logp(obs, model.rvs_to_values[obs])
    logits = local_logits(approx, model_config, seed)
    return graph_replace(logp, {logits_of(obs): logits}, strict=False).sum()


def local_logits(approx: Any, model_config: ModelConfig, seed: int) -> Any:
    """The minibatch's logits, each image's pre-activations drawn from their marginal under
    the mean-field posterior."""
    (group,) = approx.groups
    noise = NoiseStream(seed)
    tensors = {}
    for spec in param_specs(model_config):
        mean, sd = tensor_posterior(group, spec.name)
        tensors[spec.name] = Gaussian(mean, sd**2, noise)
    return forward(approx.model[IMAGES_BATCH], tensors, model_config)


def tensor_posterior(group: Any, name: str) -> tuple[Any, Any]:
    """Variable `name`'s mean-field means and standard deviations, shaped as the variable:
    its slice of the group's flat vectors."""
    _, where, shape, _ = group.ordering[name]
    return group.mean[where].reshape(shape), group.std[where].reshape(shape)


def logits_of(obs: Any) -> Any:
    """The logits the model's Categorical likelihood takes its probabilities from (the input
    of its softmax)."""
    for node in ancestors([obs]):
        if node.owner is not None and isinstance(node.owner.op, Softmax):
            return node.owner.inputs[0]
    raise ValueError(f"the observed variable {obs.name} has no softmax of logits")
