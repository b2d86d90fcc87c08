"""The one fit loop: blocks of K losses, callbacks between blocks, divergence, Ctrl-C and a
callback's StopIteration, with a fake stepper (no PyMC)."""

import numpy as np
import pytest

from bnn_cli.config import InferenceConfig
from bnn_cli.errors import FitFailed
from bnn_cli.fit.loop import FitState, run_fit


class FakeSteps:
    """Stands for a stepper: hands out the given loss blocks, one per call, or raises."""

    def __init__(self, k, blocks):
        self.k, self.blocks, self.starts = k, list(blocks), []

    def __call__(self, start):
        self.starts.append(start)
        block = self.blocks.pop(0)
        if isinstance(block, BaseException):
            raise block
        return np.asarray(block, dtype=float)


class Recorder:
    def __init__(self, settings):
        self.settings, self.seen, self.evals, self.stamps = settings, [], [], []

    def __call__(self, approx, state):
        self.seen.append((state.block_start, state.iteration, list(state.losses)))
        self.stamps.append(state.elapsed_at(state.iteration))
        if state.is_eval_point(self.settings):
            self.evals.append(state.iteration)


def test_callbacks_see_each_block_and_evals_land_on_multiples():
    settings = InferenceConfig(iterations=12, eval_every=4)
    steps = FakeSteps(4, [[4, 3, 2, 1], [1, 1, 1, 1], [0, 0, 0, 0]])
    record = Recorder(settings)
    state = run_fit(steps, None, settings, FitState(), [record])
    assert [(start, end) for start, end, _ in record.seen] == [(0, 4), (4, 8), (8, 12)]
    assert record.seen[0][2] == [4, 3, 2, 1]
    assert record.evals == [4, 8, 12] and steps.starts == [0, 4, 8]
    assert state.iteration == 12 and len(state.losses) == 12 and state.stopped is None
    assert record.stamps == sorted(record.stamps)


def test_one_step_blocks_validate_every_eval_every_and_at_the_end():
    settings = InferenceConfig(iterations=7, eval_every=3)
    record = Recorder(settings)
    state = run_fit(FakeSteps(1, [[1.0]] * 7), None, settings, FitState(), [record])
    assert record.evals == [3, 6, 7] and state.iteration == 7 and len(state.losses) == 7


def test_a_non_finite_loss_names_its_iteration_with_advice():
    settings = InferenceConfig(iterations=12, eval_every=4, learning_rate=0.5)
    steps = FakeSteps(4, [[3, 2, 1, 1], [1, 1, float("inf"), float("nan")]])
    with pytest.raises(
        FitFailed, match=r"loss became inf at iteration 7.*learning_rate \(now 0.5\).*start_sigma"
    ):
        run_fit(steps, None, settings, FitState())


def test_ctrl_c_during_a_call_leaves_the_state_at_the_last_whole_call():
    settings = InferenceConfig(iterations=12, eval_every=4)
    steps = FakeSteps(4, [[3, 2, 1, 1], KeyboardInterrupt()])
    state = FitState()
    with pytest.raises(KeyboardInterrupt):
        run_fit(steps, None, settings, state)
    assert state.iteration == 4 and state.losses == [3, 2, 1, 1]


def test_ctrl_c_in_a_callback_counts_the_whole_call_whose_parameters_are_kept():
    settings = InferenceConfig(iterations=12, eval_every=4)
    steps = FakeSteps(4, [[1, 1, 1, 1], [5, 6, 7, 8]])

    def interrupt_at_8(approx, state):
        if state.iteration == 8:
            raise KeyboardInterrupt

    state = FitState()
    with pytest.raises(KeyboardInterrupt):
        run_fit(steps, None, settings, state, [interrupt_at_8])
    assert state.iteration == 8 and state.losses == [1, 1, 1, 1, 5, 6, 7, 8]


def test_a_callback_ends_the_fit_with_stop_iteration_and_says_why():
    settings = InferenceConfig(iterations=12, eval_every=4)
    steps = FakeSteps(4, [[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]])

    def stop_at_8(approx, state):
        if state.iteration == 8:
            raise StopIteration("enough at 8")

    state = run_fit(steps, None, settings, FitState(), [stop_at_8])
    assert state.iteration == 8 and state.stopped == "enough at 8" and steps.starts == [0, 4]
