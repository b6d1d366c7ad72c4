"""The signals that stop a run to be resumed, caught from a rank's first moments.

Slurm sends SIGTERM at a job's time limit, on ``scancel`` and on preemption, and (with
``--signal``) an early SIGUSR1 up to a minute before it was asked to. Either can reach a rank
while it still imports TensorFlow, so ``python -m lars_hvd.train`` catches them before it
imports anything heavy: this module imports nothing but the standard library. A signal caught
here is only noted; ``lars_hvd.run.preemption.StopOnSignal`` stops the run at an optimizer
step that every rank agrees on.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (for the annotation only: nothing of lars_hvd is imported at run time)
    from lars_hvd.planning.plan import Plan

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

EXIT_RESUMABLE = 75  # EX_TEMPFAIL of sysexits.h: a temporary failure, run it again

received: list[int] = []  # the signals noted since catch() installed the handler


def catch() -> None:
    """From now on SIGTERM and SIGUSR1 are noted, not fatal. Idempotent: a second call keeps
    what the first one noted (a signal while TensorFlow loads still stops the run)."""
    if signal.getsignal(signal.SIGUSR1) is _note:
        return
    received.clear()
    for signum in SIGNALS:
        signal.signal(signum, _note)


def caught() -> bool:
    """Whether catch() is in force."""
    return signal.getsignal(signal.SIGUSR1) is _note


def release() -> None:
    """SIGTERM and SIGUSR1 are the default (fatal) again."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def ignore() -> None:
    """SIGTERM and SIGUSR1 are ignored (a stopped run on its way out; Python's shutdown resets
    a handler of its own to the default, but leaves an ignored signal ignored)."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def noted() -> list[int]:
    """Per signal of SIGNALS, 1 if this process noted it (summed over the ranks: which
    signals any rank noted)."""
    return [int(signum in received) for signum in SIGNALS]


def names(counts) -> str:
    """``SIGTERM and SIGUSR1``: the signals whose entry of ``counts`` (as ``noted()``) is
    not zero."""
    return " and ".join(signal.Signals(signum).name
                        for signum, count in zip(SIGNALS, counts, strict=True) if count)


def _note(signum, frame) -> None:
    received.append(signum)


class Preempted(Exception):
    """The run stopped on a signal after checkpointing its current step."""

    def __init__(self, signal_name: str, step: int, plan: Plan, checkpoint: str):
        epoch = plan.epoch_of_step(step)
        into = step - plan.step_at_epoch(epoch)
        super().__init__(
            f"stopped by {signal_name} after optimizer step {step} of {plan.total_steps} "
            f"(epoch {epoch + 1}, step {into} of {plan.steps_per_epoch}); checkpoint "
            f"{checkpoint}. Continue with the same flags and --resume (a requeued Slurm job "
            f"resumes by itself).")
        self.step, self.checkpoint = step, checkpoint
