"""The run's step clock: optimizer steps from Keras's batches, the device read once a fit."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from lars_hvd.planning.cli import parse_args
from lars_hvd.planning.plan import resolve
from lars_hvd.run.clock import StepClock


class Iterations:
    """A stand-in for ``optimizer.iterations`` that counts its reads."""

    def __init__(self, value: int):
        self.value, self.reads = value, 0

    def __int__(self):
        self.reads += 1
        return self.value


def test_the_clock_counts_optimizer_steps_of_micro_batches_from_a_resumed_step():
    plan = dataclasses.replace(resolve(parse_args(["--epochs", "3"])[0], 1),
                               steps_per_epoch=4, accumulation_steps=2)
    clock = StepClock(plan)
    iterations = Iterations(2 * 5)  # resumed at step 5: epoch 2 (0-based 1), 1 step of it
    clock.model = SimpleNamespace(optimizer=SimpleNamespace(iterations=iterations))
    clock.on_train_begin()
    clock.on_epoch_begin(1)
    assert (clock.step, clock.step_in_epoch(), clock.stepped) == (5, 1, False)
    seen = []
    for batch in range(6):  # the epoch's 3 steps left, 2 micro-batches each
        clock.on_train_batch_end(batch)
        seen.append((clock.step, clock.stepped))
    assert seen == [(5, False), (6, True), (6, False), (7, True), (7, False), (8, True)]
    assert clock.step_in_epoch() == 4
    clock.on_epoch_begin(2)
    assert clock.step_in_epoch() == 0
    assert iterations.reads == 1  # once a fit, never at a step
