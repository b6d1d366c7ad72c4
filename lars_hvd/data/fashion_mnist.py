"""Fashion-MNIST from its IDX files (Debian's ``dataset-fashion-mnist`` installs them).

60,000 training and 10,000 test images, 28x28 grey, 10 classes. Nothing is downloaded: the
files are read from ``data_dir``, by default where the Debian package puts them.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np

from lars_hvd.errors import UsageError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IDX_DTYPES = {0x08: np.uint8}


def default_dir() -> Path:
    """``$FASHION_MNIST_DIR``, else the Debian package's folder."""
    return Path(os.environ.get("FASHION_MNIST_DIR", DEFAULT_DIR))


def read_idx(path: Path) -> np.ndarray:
    """Reads one IDX file (optionally gzipped): magic, dims, then the raw array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UsageError(f"{path} is not an IDX file (bad magic number {data[:4]!r}).")
    dtype_code, ndim = data[2], data[3]
    if dtype_code not in _IDX_DTYPES:
        raise UsageError(f"{path}: unsupported IDX element type 0x{dtype_code:02x}.")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=_IDX_DTYPES[dtype_code], offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UsageError(
            f"{path}: header says {dims} ({int(np.prod(dims))} values) but the file holds "
            f"{body.size}; the file is truncated or corrupt."
        )
    return body.reshape(dims)


def check_files(data_dir: str | Path | None = None) -> None:
    """Raises UsageError, with the fix, unless all four IDX files are there."""
    for split in FILES:
        _paths(split, data_dir)


def _paths(split: str, data_dir: str | Path | None) -> list[Path]:
    data_dir = Path(data_dir) if data_dir is not None else default_dir()
    paths = [data_dir / name for name in FILES[split]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(
            f"Fashion-MNIST files not found: {', '.join(missing)}. Install them with "
            f"'apt-get install dataset-fashion-mnist' (they go to {DEFAULT_DIR}), or point "
            f"--data-dir / FASHION_MNIST_DIR at a folder holding the four IDX files."
        )
    return paths


def load(split: str, data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Returns (images float32 in [0, 1] of shape (N, 28, 28, 1), labels int32 of shape (N,)).

    A process decodes each file once while it is unchanged (the study trains many runs in one
    process), so the arrays are shared and read-only: copy them to change them.
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}. Received: split={split!r}.")
    paths = _paths(split, data_dir)
    stats = [p.stat() for p in paths]
    return _decode(tuple((str(p.resolve()), s.st_mtime_ns, s.st_size)
                         for p, s in zip(paths, stats, strict=True)))


@functools.lru_cache(maxsize=4)  # the train and test splits of two folders
def _decode(files: tuple[tuple[str, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """The arrays of an (images, labels) pair of files, each keyed on (path, mtime, size)."""
    paths = [Path(name) for name, _, _ in files]
    images, labels = (read_idx(p) for p in paths)
    if images.shape[0] != labels.shape[0]:
        raise UsageError(
            f"{paths[0]} has {images.shape[0]} images but {paths[1]} has {labels.shape[0]} labels."
        )
    x, y = (images.astype(np.float32) / 255.0)[..., None], labels.astype(np.int32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def shard(x: np.ndarray, y: np.ndarray, rank: int, size: int):
    """This rank's disjoint share (every ``size``-th example from ``rank``), trimmed so that all
    ranks hold the same number of examples (and so run the same number of steps)."""
    per_rank = x.shape[0] // size
    return x[rank::size][:per_rank], y[rank::size][:per_rank]
