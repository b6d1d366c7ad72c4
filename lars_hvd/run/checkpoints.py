"""Checkpoints: written by rank 0, restored by rank 0 and broadcast.

One per epoch (``checkpoints/epoch-N``), and step checkpoints (``checkpoints/steps/step-S``)
every ``--checkpoint-every-steps`` optimizer steps and when a signal stops the run. A
checkpoint holds the model, the optimizer (its slots and Keras's step counter) and the run
state (epochs and optimizer steps completed): a run resumes from the newest one, mid-epoch
too. TF writes a checkpoint's files under a temporary name, then ``CheckpointManager``
replaces its index atomically: an interrupted or failed save leaves the previous checkpoint
as the latest, and a failed one leaves nothing behind.
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.errors import UsageError, disk_full, disk_full_error
from lars_hvd.planning.plan import Plan
from lars_hvd.run.clock import StepClock
from lars_hvd.run.layout import checkpoint_dir, step_dir
from lars_hvd.run.optimizer_factory import build_optimizer_state, optimizer_variables


@dataclass
class RunState:
    """What a checkpoint holds besides the model and optimizer."""

    epoch: tf.Variable  # epochs completed
    step: tf.Variable  # optimizer steps completed (independent of accumulation)

    @classmethod
    def new(cls) -> RunState:
        return cls(tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch"),
                   tf.Variable(0, dtype=tf.int64, trainable=False, name="step"))


def make_checkpoint(model, optimizer, state: RunState) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=state.epoch,
                               step=state.step)


def candidates(run_dir: Path, plan: Plan) -> list[tuple[int, str]]:
    """(optimizer step, path) of every checkpoint the indexes list, newest first (an epoch
    checkpoint before a step checkpoint of the same step)."""
    found = []
    for kind, folder in ((1, checkpoint_dir(run_dir)), (0, step_dir(run_dir))):
        index = tf.train.get_checkpoint_state(str(folder))
        for path in index.all_model_checkpoint_paths if index else []:
            number = int(path.rsplit("-", 1)[1])
            step = plan.step_at_epoch(number) if kind else number
            found.append((step, kind, path))
    return [(step, path) for step, _, path in sorted(found, reverse=True)]


def restore(run_dir: Path, model, optimizer, state: RunState, plan: Plan, *,
            broadcast: bool = True) -> int:
    """Restores model, optimizer slots, epoch and step; returns the epoch to start from
    (``state.step`` says how far into it).

    Rank 0 reads the checkpoint; with ``broadcast`` the other ranks receive it (no shared
    file system needed); without, the caller synchronizes them (elastic Horovod's state
    sync). Keras's ``iterations`` is re-derived from the optimizer step, so a run may resume
    on another number of workers (other accumulation) with the same schedule.
    """
    build_optimizer_state(optimizer, model.trainable_variables)
    if broadcast:
        # Horovod: a refusal on rank 0 stops every rank with rank 0's message.
        distributed.rank0_decides(
            lambda: restore_newest_good(run_dir, model, optimizer, state, plan))
        # Horovod: every rank continues from rank 0's restored state.
        distributed.broadcast_variables(model.variables + optimizer_variables(optimizer)
                                        + [state.epoch, state.step])
    elif distributed.is_rank0():
        restore_newest_good(run_dir, model, optimizer, state, plan)
    # (in the accumulation of the phase the optimizer is wrapped for: the first; a later
    # phase re-derives it when training switches to it)
    optimizer.iterations.assign(plan.for_phase(0).iterations_at(state.step))
    return int(state.epoch)


def restore_newest_good(run_dir: Path, model, optimizer, state: RunState, plan: Plan) -> str:
    """Restores the newest checkpoint (epoch or step) that can be read into this model,
    skipping a damaged one (a truncated or corrupt file) with a warning. Returns its path."""
    folder = checkpoint_dir(run_dir)
    paths = [path for _, path in candidates(run_dir, plan)]
    if not paths:
        raise UsageError(f"--resume: {folder} lists no checkpoint to continue from.")
    failures = []
    for path in paths:
        try:
            make_checkpoint(model, optimizer, state).restore(
                path).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as err:
            # (a truncated file raises IndexError from TF's reader, a corrupt one an OpError)
            reason = str(err).strip().splitlines()[0][:300]
            failures.append(f"{Path(path).name}: {reason}")
            print(f"WARNING: checkpoint {path} cannot be restored ({reason}); trying the "
                  f"previous one", file=sys.stderr, flush=True)
            continue
        into = int(state.step) - plan.step_at_epoch(int(state.epoch))
        where = f", {into} of its steps done" if into else ""
        print(f"resumed from {path}: epoch {int(state.epoch)}, step {int(state.step)}{where}",
              flush=True)
        return path
    raise UsageError(
        f"--resume: no checkpoint in {folder} can be restored into this model "
        f"({'; '.join(failures)}). Was it made by another model? Start a new --run-dir."
    )


def weights_are_finite(model) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.variables
               if v.dtype.is_floating)


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Rank 0: one checkpoint per epoch, the last ``keep`` kept.

    An epoch whose loss or weights are not finite is not saved: the last good checkpoint
    stays. A save that fails for want of space leaves no temporary files and stops the run
    with the folder named; the checkpoints before it are untouched.
    """

    def __init__(self, run_dir: Path, state: RunState, clock: StepClock, keep: int, stop=None):
        super().__init__()
        self.run_dir, self.state, self.clock, self.keep = run_dir, state, clock, keep
        self.stop = stop  # a StopOnSignal: an epoch cut short by a signal is not an epoch
        self.manager = None

    def on_epoch_end(self, epoch, logs=None):
        if self.stop is not None and self.stop.stopped:
            return
        loss = (logs or {}).get("loss")
        if (loss is not None and not math.isfinite(loss)) or not weights_are_finite(self.model):
            print(f"not checkpointing epoch {epoch + 1}: the loss or the weights are not "
                  f"finite; the last good checkpoint is kept", file=sys.stderr, flush=True)
            return
        self.state.epoch.assign(epoch + 1)
        self.state.step.assign(self.clock.step)
        self.manager = current_manager(self.manager, self.model, self.state,
                                       checkpoint_dir(self.run_dir), "epoch", self.keep)
        save(self.manager, epoch + 1, f"the checkpoint of epoch {epoch + 1}")


def manager(model, state: RunState, folder: Path, name: str, keep: int):
    return tf.train.CheckpointManager(make_checkpoint(model, model.optimizer, state), folder,
                                      max_to_keep=keep, checkpoint_name=name)


def current_manager(existing, model, state: RunState, folder: Path, name: str, keep: int):
    """``existing``, or a new manager when there is none or the model's optimizer is not
    the one it saves (a batch-schedule phase re-wraps it; the new manager takes over the
    folder's list of checkpoints)."""
    if existing is not None and existing.checkpoint.optimizer is model.optimizer:
        return existing
    return manager(model, state, folder, name, keep)


def save(checkpoints: tf.train.CheckpointManager, number: int, what: str) -> str:
    """``checkpoints.save(number)``; a full disk leaves no partial files and stops the run."""
    folder = Path(checkpoints.directory)
    try:
        return checkpoints.save(checkpoint_number=number)
    except (tf.errors.OpError, OSError) as err:
        if not disk_full(err):
            raise
        remove_partial_saves(folder)
        raise disk_full_error(
            folder, what,
            "continue with --resume (the checkpoints before it are intact)") from None


class StepCheckpoints(tf.keras.callbacks.Callback):
    """Rank 0: a step checkpoint every ``every`` optimizer steps (0: none; not at an epoch's
    end, which has its own), and ``save_now()`` for a run stopped by a signal."""

    def __init__(self, run_dir: Path, state: RunState, clock: StepClock, keep: int,
                 every: int):
        super().__init__()
        self.run_dir, self.state, self.clock, self.keep, self.every = (
            run_dir, state, clock, keep, every)
        self.manager = None
        self.last: tuple[int, str] | None = None  # (step, path) of the last save

    def on_train_batch_end(self, batch, logs=None):
        step = self.clock.step
        if self.every and self.clock.stepped and step % self.every == 0 \
                and not self.clock.plan.ends_epoch(step):
            self.save_now()

    def save_now(self) -> str:
        step = self.clock.step
        if self.last and self.last[0] == step:
            return self.last[1]
        self.state.step.assign(step)
        self.state.epoch.assign(self.clock.plan.epoch_of_step(step))
        self.manager = current_manager(self.manager, self.model, self.state,
                                       step_dir(self.run_dir), "step", self.keep)
        self.last = (step, save(self.manager, step, f"the checkpoint of step {step}"))
        return self.last[1]


def remove_partial_saves(folder: Path) -> None:
    """Deletes what a failed save left: TF writes a checkpoint's shards into a folder named
    ``<prefix>_temp`` and moves them into place only once they are complete."""
    for partial in Path(folder).glob("*_temp*"):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
