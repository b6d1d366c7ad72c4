"""The run directory: where a run's plan, logs and checkpoints go, and the rules that keep
a user's earlier runs safe (never overwritten; resumed only with the same settings)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import tensorflow as tf

from lars_hvd.errors import UsageError
from lars_hvd.files import atomic_write_text
from lars_hvd.planning.config import TrainConfig, spelled
from lars_hvd.planning.plan import Plan, plan_json
from lars_hvd.run.layout import checkpoint_folders

# Settings that may differ between a run and its resumption (by flag name: the sections
# that hold them have been renamed before, and a run directory outlives a release).
RESUMABLE_DIFFERENCES = {"resume", "run_dir", "log_every_steps", "checkpoint_every_steps",
                         "signal_check_seconds", "progress_every_steps",
                         "progress_every_seconds", "keep_checkpoints", "xla", "deterministic",
                         "hierarchical_allreduce", "eval_batch_size", "eval_every_epochs",
                         "target_accuracy", "eval_examples"}


def default_run_dir(root: Path = Path("runs")) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def has_checkpoint(run_dir: Path) -> bool:
    """Whether an epoch or a step checkpoint of ``run_dir`` is listed in its index."""
    return any(tf.train.latest_checkpoint(str(f)) for f in checkpoint_folders(run_dir))


def prepare_run_dir(config: TrainConfig, plan: Plan) -> Path:
    """Rank 0: creates (or, with --resume, checks) the run directory and writes the plan.

    Never overwrites a previous run: an existing run directory needs --resume, and --resume
    needs a checkpoint made with the same settings.
    """
    run_dir = Path(config.job.run_dir) if config.job.run_dir else default_run_dir()
    saved = run_dir / "plan.json"
    if config.job.resume:
        if not saved.is_file() or not has_checkpoint(run_dir):
            fix = ("start over with another --run-dir, or remove it yourself if nothing in "
                   "it is worth keeping" if run_dir.is_dir() and any(run_dir.iterdir())
                   else "drop --resume to start a new run there")
            raise UsageError(
                f"--resume: {run_dir} holds no checkpoint to continue from (it needs "
                f"plan.json and checkpoints/, written at the end of each epoch); {fix}."
            )
        check_resumable(json.loads(saved.read_text())["config"], config.to_dict(), run_dir)
        atomic_write_text(run_dir / f"plan-resumed-on-{plan.world_size}-workers.json",
                          plan_json(config, plan), then="resume again")
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UsageError(
                f"{run_dir} already holds a run; pass --resume to continue it, or choose "
                f"another --run-dir (nothing was changed)."
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, plan_json(config, plan))
    return run_dir


def check_resumable(saved: dict, current: dict, run_dir: Path) -> None:
    """Raises UsageError listing the settings that differ from the run being resumed
    (``saved`` and ``current``: configs by section; settings are compared by name)."""
    now = {key: value for values in current.values() for key, value in values.items()}
    differences = []
    for values in saved.values():
        for key, old in values.items():
            new = now.get(key, "<not a setting any more>")
            if isinstance(old, list):
                old = tuple(old)
            if key not in RESUMABLE_DIFFERENCES and old != new:
                differences.append(f"{spelled(key)} was {old!r}, now {new!r}")
    if differences:
        raise UsageError(
            f"--resume: {run_dir} was trained with other settings: " + "; ".join(differences)
            + ". Resume with the run's own flags (see its plan.json)."
        )
