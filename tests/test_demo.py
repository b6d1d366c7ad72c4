"""`make demo`'s job, shrunk: two ranks, a few steps on real Fashion-MNIST pixels."""

from __future__ import annotations

import re
import sys

import pytest
import run_horovod

from lars_hvd.data import fashion_mnist


@pytest.mark.skipif(not fashion_mnist.default_dir().is_dir(),
                    reason="dataset-fashion-mnist is not installed (make install installs it)")
def test_demo_trains_under_horovodrun():
    result = run_horovod.run(
        [sys.executable, "-m", "lars_hvd.demo", "--train-examples", "8192", "--epochs", "4",
         "--global-batch-size", "1024"],
        controller="gloo", timeout=300,
    )
    assert result.returncode == 0, result.stdout[-5000:]
    assert "global batch 1024 = 2 x 512 per worker" in result.stdout
    match = re.search(r"test accuracy (\d\.\d+) .* world size 2", result.stdout)
    assert match, result.stdout[-3000:]
    assert float(match.group(1)) > 0.55  # 32 LARS steps reach ~0.72 here; chance is 0.1


def test_missing_data_dir_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist.load("train", tmp_path)


def test_shards_are_disjoint_and_equal_sized():
    import numpy as np

    x = np.arange(10)[:, None]
    y = np.arange(10)
    shards = [fashion_mnist.shard(x, y, r, 3) for r in range(3)]
    assert [len(s[1]) for s in shards] == [3, 3, 3]
    seen = np.concatenate([s[1] for s in shards])
    assert len(set(seen.tolist())) == 9
