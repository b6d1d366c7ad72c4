"""Real two-process runs of tests/distributed/hvd_lars.py, with Gloo and with MPI."""

from __future__ import annotations

import re
import sys

import pytest
import run_horovod

pytestmark = [pytest.mark.core, pytest.mark.multiprocess]


@pytest.mark.parametrize("controller", ["gloo", "mpi"])
def test_lars_under_horovodrun(controller):
    result = run_horovod.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no",
         "tests/distributed/hvd_lars.py"],
        controller=controller, timeout=300,
    )
    summaries = re.findall(r"(\d+) passed", result.stdout)
    assert result.returncode == 0 and " failed" not in result.stdout, result.stdout[-8000:]
    assert len(summaries) == 2 and all(int(n) >= 7 for n in summaries), result.stdout[-8000:]
