"""Elastic Horovod's parts of a run: the job's run directory, commits, and re-wrapping the
optimizer when the worker count changes. ``training.on_elastic_workers`` puts them together.

Workers may leave and join; after every change the plan is re-derived for the new count
(the global batch, the steps and the LR schedule stay; the per-worker batch and the
accumulation steps change). A worker that joins later enters the elastic loop directly, so
nothing here may run a collective before it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.errors import UsageError
from lars_hvd.files import atomic_write_text
from lars_hvd.planning.config import TrainConfig
from lars_hvd.planning.plan import Plan
from lars_hvd.run.optimizer_factory import build_optimizer_state, optimizer_variables
from lars_hvd.run.run_dir import prepare_run_dir

MARKER = "elastic-job.txt"


def job_identity() -> str:
    """This elastic job's identity: its driver's rendezvous address (the same for every
    worker of the job, including those that join later)."""
    return (f"{os.environ.get('HOROVOD_GLOO_RENDEZVOUS_ADDR', '')}:"
            f"{os.environ.get('HOROVOD_GLOO_RENDEZVOUS_PORT', '')}")


def run_dir(config: TrainConfig, plan: Plan) -> Path:
    """The job's run directory, without collectives: rank 0 of the first world prepares it
    as usual (a new run, or --resume) and marks it with the job's identity; a worker that
    joins later finds the mark."""
    folder = Path(config.job.run_dir)
    marker = folder / MARKER
    if marker.is_file() and marker.read_text() == job_identity():
        return folder  # joining this job
    if distributed.is_rank0():
        folder = prepare_run_dir(config, plan)
        atomic_write_text(marker, job_identity())
    return folder


def check_run_dir(folder: Path) -> None:
    """Refuses to train in a directory that this job did not prepare."""
    marker = folder / MARKER
    if not (marker.is_file() and marker.read_text() == job_identity()):
        raise UsageError(f"{folder} was not prepared by this elastic job (rank 0 refused it "
                         f"or failed first); see rank 0's message.")


class Commit(tf.keras.callbacks.Callback):
    """At each epoch's end, record the epoch and commit the elastic state.

    A reset rolls back to the last commit, the start of an epoch; the epoch's data order is
    keyed on (seed, epoch) only, so the replay reads the same global batches. Workers that
    join are let in at commits. (Runs after the checkpoint callback: last in the list.)
    """

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        self.state.epoch = epoch + 1
        if self.state.optimizer is not self.model.optimizer:
            # Horovod: a batch-schedule phase re-wrapped the optimizer; commit the new one.
            self.state.optimizer = self.model.optimizer
        self.state.commit()


def carry_optimizer(model, compile_model: Callable[[], None]) -> None:
    """Compiles ``model`` again (``compile_model()``: a newly wrapped optimizer, e.g. for
    another accumulation) and carries the old optimizer's variables into the new one."""
    old = model.optimizer
    compile_model()
    build_optimizer_state(model.optimizer, model.trainable_variables)
    pairs = list(zip(optimizer_variables(old), optimizer_variables(model.optimizer),
                     strict=True))
    for source, target in pairs:
        if source.shape != target.shape:
            raise AssertionError(f"optimizer variable {source.name} {source.shape} does not "
                                 f"fit {target.name} {target.shape}")
        target.assign(source)


def recompile_for_plan(model, plan: Plan, state, compile_model: Callable[[Plan], None]
                       ) -> None:
    """Compiles ``model`` (with ``compile_model(plan)``) for ``plan``'s accumulation steps
    and schedule, continuing the current optimizer: same slots, and Keras's ``iterations``
    re-derived from the committed epoch (a commit is an epoch's end)."""
    carry_optimizer(model, lambda: compile_model(plan))
    model.optimizer.iterations.assign(plan.iterations_at(plan.step_at_epoch(int(state.epoch))))
    # Horovod: commits, rollbacks and syncs now cover the new optimizer's variables.
    state.optimizer = model.optimizer
    state.save()
