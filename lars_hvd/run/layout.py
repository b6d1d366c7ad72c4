"""Where a run keeps its checkpoints, written once (no TensorFlow: Slurm's requeue check
reads it before Horovod starts).

    RUN_DIR/checkpoints/epoch-N...        one per epoch (index: checkpoints/checkpoint)
    RUN_DIR/checkpoints/steps/step-S...   mid-epoch and on a signal (index: steps/checkpoint)
"""

from __future__ import annotations

from pathlib import Path

INDEX = "checkpoint"  # the index file tf.train.CheckpointManager keeps in each folder


def checkpoint_dir(run_dir: Path) -> Path:
    """The epoch checkpoints' folder."""
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: Path) -> Path:
    """The step checkpoints' folder."""
    return checkpoint_dir(run_dir) / "steps"


def checkpoint_folders(run_dir: Path) -> tuple[Path, Path]:
    """Both folders, epoch checkpoints first."""
    return checkpoint_dir(run_dir), step_dir(run_dir)


def lists_checkpoint(run_dir: Path) -> bool:
    """Whether an index of epoch or step checkpoints exists in ``run_dir``."""
    return any((folder / INDEX).is_file() for folder in checkpoint_folders(run_dir))
