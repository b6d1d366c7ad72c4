"""A Slurm job's own run directory, and picking it up again after a requeue.

Under Slurm (``SLURM_JOB_ID`` set) and without ``--run-dir``, a run writes to
``runs/slurm-<job id>``: the same folder when Slurm requeues the job (after a preemption, a
time limit's early signal or ``scontrol requeue``), which keeps its id. A requeued job
(``SLURM_RESTART_COUNT`` >= 1) whose run directory lists a checkpoint resumes from it, so a
user submits once and gets a finished run. No TensorFlow here: it decides before Horovod
starts.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from lars_hvd.planning.config import TrainConfig
from lars_hvd.run.layout import lists_checkpoint


def adopt_job(config: TrainConfig, environ=None) -> tuple[TrainConfig, str | None]:
    """``config`` with the Slurm job's run directory and, after a requeue, ``--resume``;
    and a line saying so (None when nothing changed)."""
    environ = os.environ if environ is None else environ
    job = environ.get("SLURM_JOB_ID")
    if not job or config.run.elastic:
        return config, None
    run = config.run
    notes = []
    if run.run_dir is None:
        run = dataclasses.replace(run, run_dir=str(Path("runs") / f"slurm-{job}"))
        notes.append(f"run directory {run.run_dir} (Slurm job {job})")
    restarts = int(environ.get("SLURM_RESTART_COUNT", "0") or 0)
    if restarts and not run.resume and lists_checkpoint(Path(run.run_dir)):
        run = dataclasses.replace(run, resume=True)
        notes.append(f"requeued (restart {restarts}): resuming from its newest checkpoint")
    if not notes:
        return config, None
    return dataclasses.replace(config, run=run), "slurm: " + "; ".join(notes)
