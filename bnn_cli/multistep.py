"""Many ADVI steps per compiled call (JAX backend): the fit loop on the device.

One step per call costs a Python round trip, a minibatch copy and a learning-rate copy each time;
on a GPU that, not the arithmetic, bounds the rate. Here the step PyTensor compiled for JAX (the
same PyMC objective and optimizer, untouched) runs K times inside one `jax.lax.scan`:

- the training set goes to the device once; each step gathers its minibatch there by index;
- the indices come from the host's seeded per-epoch permutation (`inference.MinibatchFeeder`), one
  (K, batch) int32 block per call. It is tiny (200 kB at K=100), and it keeps the very order a
  K=1 fit sees, so K changes the speed of a fit, not the fit;
- every scheduled scalar (the learning rate, a tempered objective's KL weight) comes as a
  length-K vector, one value per step;
- the random state of the mean-field noise is threaded through the scan like the parameters.

Between calls the loop does what `inference.run_fit` does (progress, validation, checkpoints,
divergence, Ctrl-C), with the same callbacks called once per iteration in order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from bnn_cli import inference
from bnn_cli.config import InferenceConfig

logger = logging.getLogger(__name__)

# Measured (README, speed). On a GPU the host's per-step cost is the limit, and 100 steps per call
# remove it (the anchor's SCAN=1). On a CPU a step is tens of milliseconds of arithmetic, yet the
# call's own cost (the host round trip, the minibatch indices, copying the carried state in) still
# showed: `make bench` timed the MLP at 22.1 it/s with K = 10 against 17.0 with K = 1. A call of
# 10 steps is under half a second for the MLP and about two seconds for the conv net, so Ctrl-C
# stays prompt. The C and Numba backends step through their own virtual machine, one per call.
GPU_STEPS_PER_CALL = 100
CPU_STEPS_PER_CALL = 10


def default_steps_per_call(backend: str) -> int:
    if backend != "jax":
        return 1
    import jax

    return CPU_STEPS_PER_CALL if jax.default_backend() == "cpu" else GPU_STEPS_PER_CALL


def steps_per_call(settings: InferenceConfig) -> int:
    """K for this fit: the configured value (0: the default for the backend and device),
    reduced to divide both `eval_every` and `iterations`, so every call has the same length
    (one compile) and validation lands on exact multiples."""
    wanted = settings.steps_per_call or default_steps_per_call(settings.backend)
    return math.gcd(wanted, settings.eval_every, settings.iterations)


def compile_fit(
    advi, settings: InferenceConfig, mode, feeder: inference.MinibatchFeeder
) -> Callable[..., inference.FitState]:
    """The fit loop for these settings: `fit(state, on_eval, on_step)`. K = 1 is the host
    loop of `inference.run_fit`, unchanged."""
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
        step = inference.compile_step(advi, settings, mode, feeder)
        return partial(inference.run_fit, step, settings)
    return partial(run_fit, MultiStep(advi, settings, mode, feeder, k), settings)


class MultiStep:
    """`multi_step(i)`: K optimizer steps from 0-based iteration `i` in one compiled call; the
    parameters, optimizer state and random state stay in PyTensor's shared containers between
    calls (so checkpoints and `mean_field_params` read them as before); returns the K losses."""

    def __init__(self, advi, settings: InferenceConfig, mode, feeder, k: int):
        import jax

        fn, schedules = inference.compile_step_function(advi, settings, mode)
        if fn.maker.linker.scalar_shape_inputs:
            raise RuntimeError("the JAX step function has shape inputs; use steps_per_call 1")
        self.settings, self.feeder, self.k = settings, feeder, k
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
    step, n_inputs, carried_at, fed_at, carried_outputs, carried, fixed, images, labels, rows, rates
):
    """`jax.lax.scan` of PyTensor's step over (rows, rates): each step gathers its minibatch
    from the device-resident training set by one index vector (images and labels paired)."""
    import jax

    def body(state, xs):
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


def run_fit(
    step: MultiStep,
    settings: InferenceConfig,
    state: inference.FitState,
    on_eval: Callable[[inference.FitState], None],
    on_step: Callable[[inference.FitState, float], None] | None = None,
) -> inference.FitState:
    """`inference.run_fit` with K steps per call: the callbacks see every iteration in order,
    stamped with times spread evenly over its call; any non-finite loss among the K raises
    `FitFailed` naming its iteration; Ctrl-C leaves the state at the end of the last whole call,
    where the parameters are."""
    while state.iteration < settings.iterations:
        start, logged, began = state.iteration, len(state.losses), time.perf_counter()
        losses = step(start)
        took = time.perf_counter() - began
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            state.iteration = start + int(bad[0]) + 1
            raise inference.diverged(settings, float(losses[bad[0]]), state.iteration)
        try:
            for j, loss in enumerate(losses.tolist()):
                state.iteration = start + j + 1
                state.losses.append(loss)
                state.clock = began + took * (j + 1) / step.k
                if on_step:
                    on_step(state, loss)
        except KeyboardInterrupt:  # the parameters are those after the whole call
            del state.losses[logged:]
            state.losses.extend(losses.tolist())
            state.iteration = start + step.k
            raise
        finally:
            state.clock = None
        if state.iteration % settings.eval_every == 0 or state.iteration == settings.iterations:
            on_eval(state)
    return state
