"""The one error type for what the user must fix, and how the command line shows it.

A ``UsageError`` is raised where a flag, a file, the data or the environment is wrong; the
entry points print it as one line naming the value and the fix, and exit with code 2. Every
other exception is a bug (ours or a library's) and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
# Where a launcher puts a process's rank before Horovod is initialized (horovodrun and
# Open MPI, MPICH/PMI, Slurm's srun).
_RANK_VARIABLES = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")


class UsageError(Exception):
    """A bad flag, file, data set or environment: the message names the value and the fix.

    ``every_rank``: every worker meets this error alike (a bad flag, rank 0's decision shared
    with all), so rank 0 alone prints it; False for what one worker meets (its data shard).
    """

    def __init__(self, message: str, *, every_rank: bool = True):
        super().__init__(message)
        self.every_rank = every_rank


class TrainingDiverged(UsageError):
    """The loss became NaN or infinite: the settings (learning rate, warmup) are at fault."""


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the device ran out of space (an OSError, or TF's text of one)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(err) or "Disk quota exceeded" in str(err)


def disk_full_error(folder, what: str, then: str) -> UsageError:
    """The one line a full disk gets: the folder, what was being written, how to go on."""
    return UsageError(f"no space left on the device of {Path(folder)} while writing {what}; "
                      f"free space there (or choose another folder), then {then}.")


def launcher_rank() -> int:
    """This process's rank as its launcher set it (0 for a process started alone)."""
    for name in _RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def report(err: UsageError, prog: str, head_start: float = 10.0) -> int:
    """Prints ``err`` as one line (on rank 0 only, if every rank meets it); returns exit 2.

    A launcher ends the whole job when the first process exits, so a silent rank that met
    the same error waits up to ``head_start`` seconds: rank 0 exits first and the user sees
    its message (normally the launcher ends this process within a second of rank 0's exit).
    """
    if not err.every_rank or launcher_rank() == 0:
        print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
    else:
        time.sleep(head_start)
    return EXIT_USAGE
