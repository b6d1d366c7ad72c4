"""Checkpoints: one per epoch, written by rank 0, restored by rank 0 and broadcast.

A checkpoint holds the model, the optimizer (its slots and Keras's step counter) and the run
state (epochs and optimizer steps completed). TF writes a checkpoint's files under a
temporary name, then ``CheckpointManager`` replaces its index atomically: an interrupted or
failed save leaves the previous checkpoint as the latest, and a failed one leaves nothing
behind.
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
from lars_hvd.optimizers import build_optimizer_state, optimizer_variables
from lars_hvd.plan import Plan
from lars_hvd.run_dir import checkpoint_dir


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


def restore(run_dir: Path, model, optimizer, state: RunState, plan: Plan, *,
            broadcast: bool = True) -> int:
    """Restores model, optimizer slots, epoch and step; returns the epoch to start from.

    Rank 0 reads the checkpoint; with ``broadcast`` the other ranks receive it (no shared
    file system needed); without, the caller synchronizes them (elastic Horovod's state
    sync). Keras's ``iterations`` is re-derived from the optimizer step, so a run may resume
    on another number of workers (other accumulation) with the same schedule.
    """
    build_optimizer_state(optimizer, model.trainable_variables)
    if broadcast:
        # Horovod: a refusal on rank 0 stops every rank with rank 0's message.
        distributed.rank0_decides(lambda: restore_newest_good(run_dir, model, optimizer, state))
        # Horovod: every rank continues from rank 0's restored state.
        distributed.broadcast_variables(model.variables + optimizer_variables(optimizer)
                                        + [state.epoch, state.step])
    elif distributed.is_rank0():
        restore_newest_good(run_dir, model, optimizer, state)
    optimizer.iterations.assign(int(state.step) * plan.accumulation_steps)
    return int(state.epoch)


def restore_newest_good(run_dir: Path, model, optimizer, state: RunState) -> str:
    """Restores the newest checkpoint that can be read into this model, skipping a damaged
    one (a truncated or corrupt file) with a warning. Returns its path."""
    folder = checkpoint_dir(run_dir)
    index = tf.train.get_checkpoint_state(str(folder))
    candidates = list(reversed(index.all_model_checkpoint_paths)) if index else []
    if not candidates:
        raise UsageError(f"--resume: {folder} lists no checkpoint to continue from.")
    failures = []
    for path in candidates:
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
        print(f"resumed from {path}: epoch {int(state.epoch)}, step {int(state.step)}",
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

    def __init__(self, run_dir: Path, state: RunState, plan: Plan, keep: int):
        super().__init__()
        self.run_dir, self.state, self.plan, self.keep = run_dir, state, plan, keep
        self.manager = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if (loss is not None and not math.isfinite(loss)) or not weights_are_finite(self.model):
            print(f"not checkpointing epoch {epoch + 1}: the loss or the weights are not "
                  f"finite; the last good checkpoint is kept", file=sys.stderr, flush=True)
            return
        self.state.epoch.assign(epoch + 1)
        self.state.step.assign(int(self.model.optimizer.iterations)
                               // self.plan.accumulation_steps)
        folder = checkpoint_dir(self.run_dir)
        if self.manager is None:
            checkpoint = make_checkpoint(self.model, self.model.optimizer, self.state)
            self.manager = tf.train.CheckpointManager(
                checkpoint, folder, max_to_keep=self.keep, checkpoint_name="epoch")
        try:
            self.manager.save(checkpoint_number=epoch + 1)
        except (tf.errors.OpError, OSError) as err:
            if not disk_full(err):
                raise
            remove_partial_saves(folder)
            raise disk_full_error(
                folder, f"the checkpoint of epoch {epoch + 1}",
                "continue with --resume (the checkpoints before it are intact)") from None


def remove_partial_saves(folder: Path) -> None:
    """Deletes what a failed save left: TF writes a checkpoint's shards into a folder named
    ``<prefix>_temp`` and moves them into place only once they are complete."""
    for partial in Path(folder).glob("*_temp*"):
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
