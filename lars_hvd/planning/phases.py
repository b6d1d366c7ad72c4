"""A batch that grows during training: ``--batch-schedule EPOCH:BATCH[,EPOCH:BATCH...]``.

From epoch EPOCH (1-based) on, the global batch is BATCH; before the first entry it is
``--global-batch-size``. Smith, Kindermans, Ying, Le 2017 ("Don't Decay the Learning Rate,
Increase the Batch Size", arXiv:1711.00489) multiply the batch where a step schedule would
divide the LR; Mikami et al. 2018 (arXiv:1811.05233) grow it during ImageNet training too.
A schedule only grows the batch: a shrinking one is refused (neither paper shrinks it, and
it is more often a typo than a plan).

This module parses and checks the flag; ``plan.resolve`` splits each phase's batch over the
workers as it does a fixed one. No TensorFlow, no Horovod.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lars_hvd.errors import UsageError

FLAG = "--batch-schedule"


@dataclass(frozen=True)
class Phase:
    """Epochs ``first_epoch`` to ``last_epoch`` (1-based, inclusive) at one global batch."""

    first_epoch: int
    last_epoch: int
    global_batch_size: int  # examples per optimizer step, all workers
    per_worker_batch: int
    accumulation_steps: int
    steps_per_epoch: int  # optimizer steps
    peak_learning_rate: float  # the rule of the plan, at this phase's batch

    @property
    def epochs(self) -> int:
        return self.last_epoch - self.first_epoch + 1

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def describe(self) -> str:
        epochs = (f"epoch {self.first_epoch}" if self.epochs == 1 else
                  f"epochs {self.first_epoch}-{self.last_epoch}")
        return (f"{epochs}: {self.global_batch_size} examples per step = "
                f"{self.accumulation_steps} accumulation step(s) x {self.per_worker_batch} "
                f"per worker, {self.steps_per_epoch} steps an epoch, {self.steps} steps, "
                f"peak LR {self.peak_learning_rate:g}")


def parse(text: str | None, epochs: int, first_batch: int) -> list[tuple[int, int]]:
    """``[(first epoch, global batch), ...]`` of every phase, the first one from epoch 1 at
    ``first_batch``; ``[]`` without a schedule. Raises UsageError naming the entry."""
    if text is None:
        return []
    entries = []
    for entry in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", entry)
        if not match:
            raise UsageError(f"{FLAG} {text!r}: {entry.strip()!r} is not EPOCH:BATCH; write "
                             f"e.g. {FLAG} 31:65536,61:131072 (from epoch 31 on, 65536 "
                             f"examples a step).")
        entries.append((int(match.group(1)), int(match.group(2))))
    phases = [(1, first_batch)]
    for epoch, batch in entries:
        previous_epoch, previous_batch = phases[-1]
        if epoch <= 1:
            raise UsageError(f"{FLAG}: epoch {epoch} must be 2 or later; epoch 1's batch is "
                             f"--global-batch-size (set that to {batch} instead).")
        if epoch <= previous_epoch:
            raise UsageError(f"{FLAG}: the epochs must increase, but {epoch} follows "
                             f"{previous_epoch}; list each phase once, in order.")
        if epoch > epochs:
            raise UsageError(f"{FLAG}: epoch {epoch} is past --epochs {epochs}; drop the "
                             f"entry or train longer.")
        if batch <= 0:
            raise UsageError(f"{FLAG}: the batch from epoch {epoch} must be > 0 (got "
                             f"{batch}).")
        if batch <= previous_batch:
            raise UsageError(f"{FLAG}: the batch must grow, but from epoch {epoch} it would "
                             f"be {batch}, after {previous_batch}; a batch schedule only "
                             f"grows the batch (Smith et al. 2017, Mikami et al. 2018).")
        phases.append((epoch, batch))
    return phases


def text(phases: tuple[Phase, ...]) -> str:
    """The plan's lines for a batch schedule ("" for one batch)."""
    if len(phases) < 2:
        return ""
    return "\n".join(["batch schedule           " + phases[0].describe(),
                      *("                         " + p.describe() for p in phases[1:])])
