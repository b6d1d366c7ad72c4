"""Files written so that nobody ever sees them half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lars_hvd.errors import disk_full, disk_full_error


def atomic_write(path, write, then: str = "run the command again") -> None:
    """Calls ``write(binary_file)`` on a temporary file beside ``path``, then renames it into
    place: ``path`` is never seen half-written, and a failed write leaves no trace. A full
    disk is a UsageError naming the folder and ``then``, how to go on once space is free."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if disk_full(err):
            raise disk_full_error(path.parent, path.name, then) from None
        raise


def atomic_write_text(path, text: str, then: str = "run the command again") -> None:
    atomic_write(path, lambda f: f.write(text.encode()), then)
