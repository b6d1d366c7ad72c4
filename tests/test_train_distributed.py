"""`python -m lars_hvd.train` under `horovodrun`: the global batch held fixed across worlds."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import run_horovod
import tensorflow as tf

from lars_hvd.data import fashion_mnist

pytestmark = pytest.mark.skipif(
    not fashion_mnist.default_dir().is_dir(),
    reason="dataset-fashion-mnist is not installed (make install installs it)")

TRAIN = [sys.executable, "-m", "lars_hvd.train"]


def train(np_: int, args: list[str], controller: str = "gloo", env=None) -> str:
    result = run_horovod.run([*TRAIN, *args], np_=np_, controller=controller, timeout=300,
                             env=env)
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


def model_weights(run_dir) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith("model/") and k.endswith("VARIABLE_VALUE")}


# One worker accumulating 2 micro-batches and two workers with none see the same global
# batches (the data order is keyed on seed and epoch only), so they take the same steps. The
# model has no batch norm: BN normalizes each micro-batch by its own statistics in both runs,
# but its *moving* averages are per process and not all-reduced -- one process updates them
# on both micro-batches, each of two processes on its own -- so the saved BN statistics differ
# even when every trained weight agrees.
EQUIVALENCE = ["--model", "small_cnn", "--no-exclude-low-rank", "--learning-rate", "1",
               "--train-examples", "2048", "--global-batch-size", "512", "--epochs", "2",
               "--max-per-worker-batch", "256", "--warmup-epochs", "0.5"]
# Stated tolerance: float32 sums taken in another order (local accumulation vs allreduce).
EQUIVALENCE_TOLERANCE = 1e-5


def test_same_global_batch_same_weights_np1_accumulating_vs_np2(tmp_path):
    one = train(1, [*EQUIVALENCE, "--run-dir", str(tmp_path / "np1")])
    two = train(2, [*EQUIVALENCE, "--run-dir", str(tmp_path / "np2")])
    assert "= 1 workers x 2 accumulation step(s) x 256 per-worker batch" in one
    assert "= 2 workers x 1 accumulation step(s) x 256 per-worker batch" in two
    a, b = model_weights(tmp_path / "np1"), model_weights(tmp_path / "np2")
    assert a.keys() == b.keys() and len(a) == 8  # 4 kernels, 4 biases
    for key in a:
        error = np.linalg.norm(a[key] - b[key]) / np.linalg.norm(a[key])
        assert error < EQUIVALENCE_TOLERANCE, (key, error)


def test_default_job_shrunk_trains_under_horovodrun(tmp_path):
    # BN statistics recomputed: after 32 steps the moving averages still lag the weights.
    out = train(2, ["--train-examples", "8192", "--global-batch-size", "1024", "--epochs", "4",
                    "--bn-recompute-examples", "2048", "--run-dir", str(tmp_path / "run")])
    assert "= 2 workers x 1 accumulation step(s) x 512 per-worker batch" in out
    match = re.search(r"test accuracy (\d\.\d+) \| \d+ images/s \| wall [\d.]+ s \| global "
                      r"batch 1024 \| world size 2", out)
    assert match, out[-3000:]
    assert float(match.group(1)) > 0.55  # 32 LARS steps reach ~0.7 here; chance is 0.1
    assert len(re.findall(r"test accuracy", out)) == 1  # rank 0 alone prints


def test_refusal_on_rank0_stops_every_rank(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    result = run_horovod.run([*TRAIN, "--train-examples", "1024", "--global-batch-size", "512",
                              "--run-dir", str(tmp_path / "run")], timeout=240)
    assert result.returncode != 0
    assert result.stdout.count("already holds a run") == 2  # both ranks say why
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_xla_clusters_beside_horovod_allreduce(tmp_path):
    out = train(2, ["--train-examples", "2048", "--global-batch-size", "512", "--epochs", "2",
                    "--xla", "--run-dir", str(tmp_path / "run")], env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "XLA service" in out  # XLA compiled clusters on the CPU
    assert re.search(r"test accuracy \d\.\d+ .* world size 2", out)
