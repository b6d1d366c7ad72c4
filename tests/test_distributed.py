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


def test_the_launchers_build_check_answers_as_horovod_does(monkeypatch):
    """`python -m lars_hvd.horovodrun` (the runs above) asks Horovod's extension itself
    whether it was built with Gloo and MPI; where it cannot, horovodrun's own check runs."""
    import subprocess

    import horovod.tensorflow as hvd

    from lars_hvd import horovodrun

    assert horovodrun.LAUNCHER[1:] == ["-m", "lars_hvd.horovodrun"]
    assert horovodrun.extension_built() == {"gloo": hvd.gloo_built(), "mpi": hvd.mpi_built()}
    # Its answer is the one horovodrun acts on: a build without MPI refuses --mpi. (In a
    # process of its own: with MPI, horovodrun replaces its process by mpirun's.)
    refused = subprocess.run(
        [sys.executable, "-c", "from lars_hvd import horovodrun as h; h._BUILT = 'print(1, 0)'; "
         f"h.main(['-np', '1', '-H', 'localhost:1', '--mpi', {sys.executable!r}, '-V'])"],
        capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "MPI support has not been built" in refused.stderr, refused.stderr[-3000:]
    monkeypatch.setattr(horovodrun, "_BUILT", "raise SystemExit(1)")
    assert horovodrun.extension_built() is None
