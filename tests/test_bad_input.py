"""Every row of docs/bad-input.md, run for real: its exit code, its message, its files."""

from __future__ import annotations

import re

import bad_inputs
import pytest

from lars_hvd.data import fashion_mnist

pytestmark = pytest.mark.skipif(not fashion_mnist.default_dir().is_dir(),
                                reason="dataset-fashion-mnist is not installed")


@pytest.mark.parametrize("case", bad_inputs.CASES, ids=lambda c: c.name[:50])
def test_bad_input(case, tmp_path):
    outcome = case.run(tmp_path)
    assert outcome.code == case.code, outcome.output[-3000:]
    assert re.search(case.message, outcome.output), outcome.output[-3000:]
    assert re.search(case.written, outcome.written), outcome.written
    assert "Traceback" not in outcome.output, outcome.output[-3000:]


def test_the_table_lists_every_case():
    from pathlib import Path

    table = (Path(__file__).resolve().parent.parent / "docs" / "bad-input.md").read_text()
    for case in bad_inputs.CASES:
        assert f"| {case.name} |" in table, case.name
