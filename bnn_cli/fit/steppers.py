"""Steppers: K ADVI steps per call, for the loop in `fit.loop`.

`OneStep` is PyMC's compiled step, one per call (every backend). `MultiStep` runs many per
compiled call (JAX backend): the fit loop on the device. One step per call costs a Python round
trip, a minibatch copy and a learning-rate copy each time; on a GPU that, not the arithmetic,
bounds the rate. Here the step PyTensor compiled for JAX (the same PyMC objective and optimizer,
untouched) runs K times inside one `jax.lax.scan`:

- the training set goes to the device once; each step gathers its minibatch there by index;
- the indices come from the host's seeded per-epoch permutation (`fit.feeder.MinibatchFeeder`),
  one (K, batch) int32 block per call. It is tiny (200 kB at K=100), and it keeps the very order a
  K=1 fit sees, so K changes the speed of a fit, not the fit;
- every scheduled scalar (the learning rate, a tempered objective's KL weight) comes as a
  length-K vector, one value per step;
- the random state of the mean-field noise is threaded through the scan like the parameters.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from bnn_cli.config import InferenceConfig
from bnn_cli.fit.advi import compile_step_function
from bnn_cli.fit.feeder import MinibatchFeeder
from bnn_cli.fit.loop import Stepper

logger = logging.getLogger(__name__)

# On a GPU the host's per-step cost is the limit, and 100 steps per call remove it (the anchor's
# SCAN=1). On a CPU a step is tens of milliseconds of arithmetic, yet a call's own cost (the host
# round trip, the minibatch indices, copying the carried state in) still shows, so a few steps
# share one call; few enough that a call stays short and Ctrl-C prompt. The C and Numba backends
# step through their own virtual machine, one step per call. (Measured: docs/results.md, Speed.)
GPU_STEPS_PER_CALL = 100
CPU_STEPS_PER_CALL = 10


def default_steps_per_call(backend: str) -> int:
    if backend != "jax":
        return 1
    import jax  # lazy: imports JAX

    return CPU_STEPS_PER_CALL if jax.default_backend() == "cpu" else GPU_STEPS_PER_CALL


def steps_per_call(settings: InferenceConfig) -> int:
    """K for this fit: the configured value (0: the default for the backend and device),
    reduced to divide both `eval_every` and `iterations`, so every call has the same length
    (one compile) and validation lands on exact multiples."""
    wanted = settings.steps_per_call or default_steps_per_call(settings.backend)
    return math.gcd(wanted, settings.eval_every, settings.iterations)


def make_stepper(
    advi: Any, settings: InferenceConfig, mode: Any, feeder: MinibatchFeeder
) -> Stepper:
    """The stepper for these settings: K = 1 is PyMC's step function called once per step."""
    k = steps_per_call(settings)
    if settings.steps_per_call and k != settings.steps_per_call:
        logger.info(
            "steps_per_call %d -> %d, to divide eval_every %d and iterations %d",
            settings.steps_per_call,
            k,
            settings.eval_every,
            settings.iterations,
        )
    if k == 1:
        return OneStep(advi, settings, mode, feeder)
    return MultiStep(advi, settings, mode, feeder, k)


class OneStep:
    """One optimizer step per call: feed the next minibatch, set the scheduled values (the
    learning rate, a tempered objective's KL weight), then PyMC's compiled function samples the
    weights, takes the step and returns the loss (negative ELBO estimate)."""

    k = 1

    def __init__(
        self, advi: Any, settings: InferenceConfig, mode: Any, feeder: Callable[[], None]
    ) -> None:
        self.fn, self.schedules = compile_step_function(advi, settings, mode)
        self.feeder = feeder

    def __call__(self, start: int) -> np.ndarray:
        self.feeder()
        for shared, value_at in self.schedules.items():
            shared.set_value(np.asarray(value_at(start), dtype=shared.dtype))
        return np.array([float(self.fn())])


class MultiStep:
    """`multi_step(i)`: K optimizer steps from 0-based iteration `i` in one compiled call; the
    parameters, optimizer state and random state stay in PyTensor's shared containers between
    calls (so checkpoints and `posterior.params.from_approx` read them); returns the K losses."""

    def __init__(
        self, advi: Any, settings: InferenceConfig, mode: Any, feeder: Any, k: int
    ) -> None:
        import jax  # lazy: imports JAX

        fn, schedules = compile_step_function(advi, settings, mode)
        if fn.maker.linker.scalar_shape_inputs:
            raise RuntimeError("the JAX step function has shape inputs; use steps_per_call 1")
        self.fn, self.settings, self.feeder, self.k = fn, settings, feeder, k  # fn: for resume
        self.cells = fn.vm.inputs  # the shared variables' storage, in the graph's input order
        # Inputs are found by their storage: PyTensor may clone a shared variable, not its cell.
        position = {id(cell): i for i, cell in enumerate(self.cells)}
        shared = (feeder.x_batch, feeder.y_batch, *schedules)
        fed = [position[id(s.container.storage)] for s in shared]  # batch, labels, schedules
        self.schedules = list(schedules.values())
        self.dtype = next(iter(schedules)).dtype
        updates = fn.maker.fgraph.update_mapping  # output index -> input index
        self.carried = sorted(updates.values())
        out_of = {i: o for o, i in updates.items()}
        carried_outputs = [out_of[i] for i in self.carried]
        self.images = jax.device_put(feeder.images)  # once: each step gathers on the device
        self.labels = jax.device_put(feeder.labels)
        self.step = fn.vm.jit_fn.__wrapped__  # the traceable function jax.jit wrapped
        self.layout = (len(self.cells), self.carried, fed, carried_outputs)
        self.scan = jax.jit(partial(k_steps, self.step, *self.layout))

    def __call__(self, start: int) -> np.ndarray:
        rows = np.stack([self.feeder.next_indices() for _ in range(self.k)]).astype(np.int32)
        steps = range(start, start + self.k)
        rates = np.array([[at(i) for at in self.schedules] for i in steps], dtype=self.dtype)
        skip = {*self.carried, *self.layout[2]}  # the fed inputs come from the device's copy
        fixed = {i: c[0] for i, c in enumerate(self.cells) if i not in skip}
        carried = tuple(self.cells[i][0] for i in self.carried)
        new, losses = self.scan(carried, fixed, self.images, self.labels, rows, rates)
        losses = np.asarray(losses)  # waits for the call; Ctrl-C lands here, state untouched
        for i, value in zip(self.carried, new, strict=True):
            self.cells[i][0] = value
        return losses


def k_steps(
    step: Any,
    n_inputs: Any,
    carried_at: Any,
    fed_at: Any,
    carried_outputs: Any,
    carried: Any,
    fixed: Any,
    images: Any,
    labels: Any,
    rows: list[dict[str, Any]],
    rates: Any,
) -> Any:
    """`jax.lax.scan` of PyTensor's step over (rows, rates): each step gathers its minibatch
    from the device-resident training set by one index vector (images and labels paired)."""
    import jax  # lazy: imports JAX

    def body(state: Any, xs: Any) -> tuple[Any, Any]:
        batch_rows, step_rates = xs
        args = [None] * n_inputs
        for i, value in fixed.items():
            args[i] = value
        for i, value in zip(carried_at, state, strict=True):
            args[i] = value
        args[fed_at[0]] = images[batch_rows]
        args[fed_at[1]] = labels[batch_rows]
        for j, i in enumerate(fed_at[2:]):
            args[i] = step_rates[j]
        outputs = step(*args)
        return tuple(outputs[o] for o in carried_outputs), outputs[0]

    return jax.lax.scan(body, carried, (rows, rates))
