"""`python -m lars_hvd.train` under `horovodrun`: the default job stopping every rank at its
target, a refusal and a bad flag printed once, ImageNet shards counted exactly. (The global
batch held fixed across worlds, 1 worker accumulating = 2 workers, is test_batch_schedule.py's.)"""

from __future__ import annotations

import re
import sys

import pytest
import run_horovod
import tensorflow as tf

pytestmark = [pytest.mark.core, pytest.mark.multiprocess, pytest.mark.fashion_mnist]

TRAIN = [sys.executable, "-m", "lars_hvd.train"]


def train(np_: int, args: list[str], controller: str = "gloo", env=None) -> str:
    result = run_horovod.run([*TRAIN, *args], np_=np_, controller=controller, timeout=300,
                             env=env)
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


def test_default_job_shrunk_stops_every_rank_at_its_target_with_xla(tmp_path):
    """The demo job shrunk, compiled with XLA beside Horovod's allreduce: epoch 3 of 6
    evaluates at about 0.8, so both ranks stop after the epoch that reaches 0.7; the test
    accuracy (BN statistics recomputed: after a few steps the moving averages still lag the
    weights) is printed once, by rank 0."""
    out = train(2, ["--train-examples", "8192", "--global-batch-size", "512",
                    "--warmup-epochs", "0.5", "--epochs", "6", "--target-accuracy", "0.7",
                    "--bn-recompute-examples", "2048", "--xla",
                    "--run-dir", str(tmp_path / "run")], env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "= 2 workers x 1 accumulation step(s) x 256 per-worker batch" in out
    assert "XLA service" in out  # XLA compiled clusters on the CPU
    match = re.search(r"\| target 0\.7 reached at epoch (\d) in [\d.]+ s", out)
    assert match and int(match.group(1)) < 6, out[-3000:]
    assert f"Epoch {int(match.group(1)) + 1}/6" not in out
    assert "replicas agree" in out  # both ranks left training at the same step
    match = re.search(r"test accuracy (\d\.\d+) \| \d+ images/s \| wall [\d.]+ s \| global "
                      r"batch 512 \| world size 2", out)
    assert match, out[-3000:]
    assert float(match.group(1)) > 0.55  # chance is 0.1
    assert len(re.findall(r"test accuracy", out)) == 1  # rank 0 alone prints


def test_refusal_on_rank0_stops_every_rank(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    result = run_horovod.run([*TRAIN, "--train-examples", "1024", "--global-batch-size", "512",
                              "--run-dir", str(tmp_path / "run")], timeout=240)
    assert result.returncode != 0
    # Every rank stops with rank 0's refusal; it is printed once, by rank 0, as one line.
    assert result.stdout.count("already holds a run") == 1, result.stdout[-3000:]
    assert re.search(r"\[0\]<stderr>:lars_hvd.train: error: \S+ already holds a run",
                     result.stdout), result.stdout[-3000:]
    assert not re.search(r"^\[\d+\]<std\w+>:Traceback", result.stdout, re.M)  # no rank's
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_a_bad_flag_under_horovodrun_is_one_line_from_rank0():
    result = run_horovod.run([*TRAIN, "--learning-rate", "inf"], timeout=120)
    assert result.returncode != 0
    lines = [ln for ln in result.stdout.splitlines() if re.match(r"\[\d+\]<std\w+>:.*error:", ln)]
    assert len(lines) == 1 and lines[0].startswith("[0]<stderr>:lars_hvd.train: error: "), \
        result.stdout[-3000:]
    assert "--learning-rate must be a finite number (got inf)" in lines[0]


def test_imagenet_shards_under_horovodrun_count_exactly(tmp_path):
    """Two workers on ImageNet-layout shards: each reads its own training shards, a bad record
    in worker 1's shard is skipped and counted in the total, and the accuracy over 3
    validation shards split 2 + 1 is counted exactly (a mean of the two workers' accuracies
    would not be a multiple of 1/300)."""
    import json

    from lars_hvd.data import make_tfrecords

    data = tmp_path / "data"
    for split, shards, count in (("train", 4, 1200), ("validation", 3, 300)):
        assert make_tfrecords.main(["default", str(data), "--source", "fashion-mnist",
                                    "--split", split, "--shards", str(shards),
                                    "--max-examples", str(count)]) == 0
    shard = data / "train-00001-of-00004"  # worker 1 reads shards 1 and 3
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
    bad = tf.train.Example()
    bad.ParseFromString(records[0])
    bad.features.feature["image/encoded"].bytes_list.value[0] = b"\xff\xd8\xff broken"
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for record in [*records[:5], bad.SerializeToString(), *records[5:]]:
            writer.write(record)
    out = train(2, ["--dataset", "imagenet", "--data-dir", str(data), "--model",
                    "small_cnn_bn", "--augment", "crop", "--global-batch-size", "200",
                    "--epochs", "3", "--learning-rate", "3", "--run-dir", str(tmp_path / "run")])
    assert "= 2 workers x 1 accumulation step(s) x 100 per-worker batch" in out
    assert "train-00001-of-00004 record 5: undecodable image" in out
    assert out.count("train-00001-of-00004 record 5: undecodable image") == 3  # each epoch
    assert "bad records skipped: 3 over all workers and epochs" in out
    accuracy = json.loads((tmp_path / "run" / "summary.json").read_text())["test_accuracy"]
    assert abs(accuracy * 300 - round(accuracy * 300)) < 1e-9, accuracy
    assert accuracy > 0.3  # chance is 0.1
