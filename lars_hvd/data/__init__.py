"""The data sets lars_hvd reads, and what the planner needs to know of them without loading
them (and without TensorFlow): example counts, classes, image shape.

The input pipelines themselves are in ``lars_hvd.data.pipeline`` (TensorFlow).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lars_hvd.errors import UsageError

MANIFEST = "dataset.json"  # written by make_tfrecords beside the shards of a converted set


@dataclass(frozen=True)
class DatasetInfo:
    train: int | None  # training examples (None: set by --synthetic-examples)
    eval: int  # evaluation examples
    classes: int | None  # None: --num-classes, else 1000
    shape: tuple[int, int, int] | None  # None: the model's own input shape


DATASETS: dict[str, DatasetInfo] = {
    # Xiao et al. 2017: 60,000 training and 10,000 test images, 28x28 grey, 10 classes.
    "fashion-mnist": DatasetInfo(60_000, 10_000, 10, (28, 28, 1)),
    # ILSVRC-2012: 1,281,167 training and 50,000 validation images, 1000 classes.
    "imagenet": DatasetInfo(1_281_167, 50_000, 1000, None),
    "synthetic": DatasetInfo(None, 0, None, None),
}


def read_manifest(data_dir: str | Path | None) -> dict | None:
    """``DIR/dataset.json`` (example and class counts of a converted set), or None."""
    if data_dir is None:
        return None
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise UsageError(f"{path} is not valid JSON ({err}); rewrite it or remove it.") from err
