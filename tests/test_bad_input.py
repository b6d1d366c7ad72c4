"""Every row of docs/bad-input.md, run for real: its exit code, its message, its files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import bad_inputs
import pytest

pytestmark = pytest.mark.fashion_mnist


def needs(case) -> None:
    """Skips a case this machine cannot run (with the reason); under CI it must run."""
    why = case.needs()
    if why and os.environ.get("CI"):
        pytest.fail(f"CI must run {case.name!r}, but: {why}")
    if why:
        pytest.skip(why)


@pytest.mark.multiprocess
@pytest.mark.parametrize("case", bad_inputs.CASES, ids=lambda c: c.name[:50])
def test_bad_input(case, tmp_path):
    needs(case)
    outcome = case.run(tmp_path)
    assert outcome.code == case.code, outcome.output[-3000:]
    assert re.search(case.message, outcome.output, re.M), outcome.output[-3000:]
    assert re.search(case.written, outcome.written), outcome.written
    assert "Traceback" not in outcome.output, outcome.output[-3000:]
    if case.code == 2:  # a user error is one line
        errors = [line for line in outcome.output.splitlines() if ": error: " in line]
        assert len(errors) == 1, outcome.output[-3000:]


@pytest.mark.multiprocess
def test_a_full_disk_run_resumes_once_space_is_free(tmp_path):
    case = next(c for c in bad_inputs.CASES if c.run is bad_inputs.disk_full)
    needs(case)
    outcome = bad_inputs.disk_full(tmp_path, then_resume=True)
    assert outcome.code == 0, outcome.output[-3000:]
    assert re.search(r"resumed from \S*epoch-2: epoch 2", outcome.output), outcome.output[-3000:]
    assert outcome.written.endswith("checkpoints of epochs [2, 3, 4]; temporary files []"), \
        outcome.written


def test_the_table_lists_every_case():
    table = (Path(__file__).resolve().parent.parent / "docs" / "bad-input.md").read_text()
    for case in bad_inputs.CASES:
        assert f"| {case.name} |" in table, case.name


@pytest.mark.multiprocess
def test_a_crash_in_native_code_prints_where_python_was():
    """A segmentation fault (in MPI, PMIx, TensorFlow) is not a user error and has no Python
    exception: the command still prints its Python stack before it dies of the signal."""
    crash = ("import ctypes, sys; from lars_hvd import train; "
             "train.main = lambda argv: ctypes.string_at(0); sys.exit(train.cli([]))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    out = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True,
                         env=env, cwd=Path(__file__).resolve().parent.parent, timeout=120,
                         check=False)
    assert out.returncode == -signal.SIGSEGV, out.stderr[-3000:]
    assert "Fatal Python error: Segmentation fault" in out.stderr, out.stderr[-3000:]
    assert re.search(r'File ".*lars_hvd/train\.py", line \d+ in cli', out.stderr), out.stderr
