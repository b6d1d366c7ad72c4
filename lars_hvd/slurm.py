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
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id or config.job.elastic:
        return config, None
    job = config.job
    notes = []
    if job.run_dir is None:
        job = dataclasses.replace(job, run_dir=str(Path("runs") / f"slurm-{job_id}"))
        notes.append(f"run directory {job.run_dir} (Slurm job {job_id})")
    restarts = int(environ.get("SLURM_RESTART_COUNT", "0") or 0)
    if restarts and not job.resume and lists_checkpoint(Path(job.run_dir)):
        job = dataclasses.replace(job, resume=True)
        notes.append(f"requeued (restart {restarts}): resuming from its newest checkpoint")
    if not notes:
        return config, None
    return dataclasses.replace(config, job=job), "slurm: " + "; ".join(notes)
