"""`python -m lars_hvd.bench`: its arithmetic, and each benchmark run small for real.

Correctness only: these tests never judge a speed (that is what `make bench` reports).
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import run_horovod

from lars_hvd.bench import results, scaling, summary
from lars_hvd.bench.__main__ import main as bench_main
from lars_hvd.planning import profiles

BENCH = [sys.executable, "-m", "lars_hvd.bench"]


# -- statistics ----------------------------------------------------------------------------

def test_interval95_is_the_student_t_interval():
    mean, half = results.interval95([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 / math.sqrt(3))
    assert results.interval95([5.0]) == (5.0, 0.0)
    r = results.ratio_summary([2.0, 4.0], [1.0, 2.0])
    assert r["rounds"] == [2.0, 2.0] and r["ratio"] == 2.0 and r["ci95"] == 0.0


# -- the scaling view of lars_hvd.planning.cost (the model itself: tests/test_cost.py) -------

def test_scaling_holds_the_global_batch_and_accumulates_past_the_memory_bound():
    hw = profiles.HARDWARE["dgx1-v100"]
    for gpus in (8, 64, 1024):
        p, efficiency = scaling.project(hw, gpus, 32768, 256)
        assert p.per_gpu_batch * p.accumulation_steps * gpus == 32768
        assert p.per_gpu_batch <= 256 and 0 < efficiency <= 1
    assert scaling.project(hw, 8, 32768, 256)[0].accumulation_steps == 16
    with pytest.raises(ValueError, match="gpus=64, global_batch=32"):
        scaling.project(hw, 64, 32, 256)


def test_parameter_and_batch_norm_counts_are_the_models():
    import tensorflow as tf
    from lars_hvd.models import build

    from lars_hvd.planning import cost

    def count(name, shape, classes):
        model = build(name, shape, classes)
        norms = [layer.moving_mean.shape[0] for layer in model.layers
                 if isinstance(layer, tf.keras.layers.BatchNormalization)]
        assert cost.BATCH_NORM[name] == (len(norms), sum(norms)), name
        return sum(int(np.prod(v.shape)) for v in model.trainable_variables)

    assert count("resnet50", (224, 224, 3), 1000) == scaling.RESNET50_PARAMETERS
    assert count("alexnet_bn", (227, 227, 3), 1000) == scaling.ALEXNET_BN_PARAMETERS


def test_scaling_command_writes_json_plot_and_summary(tmp_path, capsys):
    bench_main(["scaling", "--gpus", "8", "64", "--profiles", "dgx1-v100", "--out",
                str(tmp_path)])
    saved = json.loads((tmp_path / "scaling.json").read_text())
    assert [p["gpus"] for p in saved["profiles"]["dgx1-v100"]["hierarchical"]] == [8, 64]
    assert saved["command"].startswith("python -m lars_hvd.bench scaling")
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert "efficiency" in capsys.readouterr().out
    text = summary.render(tmp_path)
    assert "projected ResNet-50 scaling, batch 32,768, dgx1-v100" in text


# -- measurements, small -------------------------------------------------------------------

def test_optimizer_bench_traces_once_and_steps_every_optimizer(tmp_path):
    bench_main(["optimizer", "--model", "small_cnn_bn", "--image-size", "28",
                "--num-classes", "10", "--batch", "8", "--rounds", "2", "--steps", "1",
                "--xla", "off", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "optimizer.json").read_text())
    apply = saved["apply"]["no_xla"]
    assert set(apply["tracing_count"].values()) == {1}  # no retracing in the timed rounds
    assert set(apply["ratios"]) == {"lars/sgd", "lamb/sgd"}
    assert all(r["ratio"] > 0 and len(r["rounds"]) == 2 for r in apply["ratios"].values())
    assert saved["step"]["no_xla"]["ratios"]["lars/sgd"]["ratio"] > 0
    assert saved["parameters"] == 106_202 - 2 * (16 + 32 + 64)  # BN moving stats untrained


def test_optimizer_bench_steps_change_the_weights():
    from lars_hvd.bench.optimizer import apply_functions

    fns, _, _, state = apply_functions("small_cnn_bn", ["lars", "sgd"], False, (28, 28, 1), 10)
    for name in ("lars", "sgd"):
        before = [v.numpy() for v in state[name]]
        assert fns[name]().numpy() == 2.0  # iterations: the tracing call and this one
        after = [v.numpy() for v in state[name]]
        assert all(np.isfinite(a).all() for a in after)
        assert all(not np.array_equal(a, b) for a, b in zip(after, before, strict=True))


def test_overhead_bench_in_one_process(tmp_path):
    bench_main(["overhead", "--batch", "64", "--steps", "8", "--epochs", "1", "--skip", "2",
                "--rounds", "2", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "overhead.json").read_text())
    assert len(saved["ours_images_per_second"]) == len(saved["bare_images_per_second"]) == 2
    assert saved["ratio"] > 0 and len(saved["rounds"]) == 2
    assert "bare `model.fit`" in summary.render(tmp_path)


@pytest.mark.multiprocess
def test_overhead_bench_on_two_workers_reports_medians_and_cpu(tmp_path):
    bench_main(["overhead", "--workers", "2", "--batch", "32", "--steps", "6", "--epochs", "1",
                "--skip", "2", "--rounds", "2", "--timeout", "300", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "overhead-2w.json").read_text())
    assert saved["workers"] == 2 and saved["bare_learning_rate"] == "poly"
    assert saved["command"].startswith("python -m lars_hvd.bench overhead --workers 2")
    assert len(saved["ours_cpu_seconds_per_step"]) == len(saved["bare_cpu_seconds_per_step"]) == 2
    assert all(c > 0 for c in saved["ours_cpu_seconds_per_step"])
    ratios = [a / b for a, b in zip(saved["ours_images_per_second"],
                                    saved["bare_images_per_second"], strict=True)]
    assert saved["median"]["rounds"] == pytest.approx(ratios)
    assert saved["median"]["low"] <= saved["median"]["median"] <= saved["median"]["high"]
    assert "`horovodrun -np 2`" in summary.render(tmp_path)
    assert not (tmp_path / "overhead.json").exists()  # the 1-worker result is not replaced


@pytest.mark.multiprocess
def test_bn_group_bench_times_the_chain_and_both_sides_on_two_workers(tmp_path):
    bench_main(["bn-group", "--model", "small_cnn_bn", "--batch", "32", "--steps", "3",
                "--skip", "1", "--rounds", "2", "--calls", "1", "--stretch-ms", "0", "1",
                "--timeout", "300", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "bn-group-2w.json").read_text())
    assert saved["workers"] == 2 and saved["batch_norm_channels"] == [16, 32, 64]
    assert [r["stretch_ms"] for r in saved["chain"]] == [0, 1]
    assert all(r["collectives"] == 6 for r in saved["chain"])
    assert saved["chain"][1]["measured_stretch_ms"] >= 1  # the stand-in compute did run
    assert len(saved["grouped_cpu_seconds_per_step"]) == len(saved["plain_images_per_second"]) == 2
    ratios = [a / b for a, b in zip(saved["grouped_images_per_second"],
                                    saved["plain_images_per_second"], strict=True)]
    assert saved["median"]["rounds"] == pytest.approx(ratios)
    assert "`--bn-group 2` / `--bn-group 1`" in summary.render(tmp_path)


def test_median_interval_is_the_binomial_order_statistics_interval():
    from lars_hvd.bench.results import median_interval95

    # n = 10: P(Binomial(10, 1/2) <= 1) = 11/1024, so the interval is x(2)..x(9), 97.9%.
    assert median_interval95(range(10, 0, -1)) == (5.5, 2, 9, pytest.approx(1 - 22 / 1024))
    # n = 5: no interval reaches 95%; min..max and what it covers (1 - 2/32).
    assert median_interval95([3, 1, 2, 5, 4]) == (3, 1, 5, pytest.approx(0.9375))
    # n = 20: x(6)..x(15) (P(B <= 5) = 0.0207).
    median, low, high, cover = median_interval95(range(20))
    assert (low, high) == (5, 14) and cover == pytest.approx(0.9586, abs=1e-4)


@pytest.mark.multiprocess
def test_throughput_under_horovodrun_prints_horovods_lines(tmp_path):
    result = run_horovod.run(
        [*BENCH, "throughput", "--model", "small_cnn_bn", "--batch", "32",
         "--num-warmup-batches", "2", "--num-batches-per-iter", "3", "--num-iters", "2",
         "--out", str(tmp_path)], np_=2, controller="gloo", timeout=240)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Img/sec per worker:" in result.stdout
    assert "Total img/sec on 2 worker(s):" in result.stdout
    saved = json.loads((tmp_path / "throughput.json").read_text())
    assert saved["workers"] == 2 and len(saved["iterations"]) == 2


@pytest.mark.multiprocess
@pytest.mark.parametrize("controller", ["gloo", "mpi"])
def test_allreduce_bench_measures_both_fusion_settings(tmp_path, controller):
    from lars_hvd import models

    # A small model's gradient: the bench's ResNet-50 (161 tensors, 102 MB) is the same code
    # at 4x this test's CPU; its parameter count is test_parameter_and_batch_norm_counts's.
    bench_main(["allreduce", "--controllers", controller, "--max-bytes", str(64 << 10),
                "--model", "small_cnn_bn", "--timeout", "240", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "allreduce.json").read_text())
    jobs = saved["jobs"]
    assert set(jobs) == {f"{controller}, fusion 64 MB", f"{controller}, fusion off"}
    fused = jobs[f"{controller}, fusion 64 MB"]
    assert [r["bytes"] for r in fused["sizes"]] == [4096, 16384, 65536]
    assert all(r["bus_gbytes_per_second"] > 0 for r in fused["sizes"])
    model = models.build("small_cnn_bn", models.input_shape("small_cnn_bn"), 10)
    assert fused["gradient"] == {
        "model": "small_cnn_bn", "tensors": len(model.trainable_variables),
        "bytes": 4 * sum(int(np.prod(v.shape)) for v in model.trainable_variables),
        "fp32_seconds": fused["gradient"]["fp32_seconds"],
        "fp16_seconds": fused["gradient"]["fp16_seconds"]}
    assert jobs[f"{controller}, fusion off"]["gradient"]["fp32_seconds"] > 0
    assert jobs[f"{controller}, fusion off"]["fusion_threshold_bytes"] == 0
    assert (tmp_path / "allreduce.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_flags_are_named():
    with pytest.raises(SystemExit, match="--model 'vgg' is not a registered model"):
        bench_main(["optimizer", "--model", "vgg", "--no-save"])
    with pytest.raises(SystemExit, match="--model 'vgg' is not a registered model"):
        bench_main(["allreduce", "--model", "vgg", "--no-save"])
    with pytest.raises(SystemExit, match="--rounds must be positive, got 0"):
        bench_main(["overhead", "--rounds", "0", "--no-save"])
    with pytest.raises(SystemExit, match="--windows 2 is too few: the first is left out"):
        bench_main(["input", "--windows", "2", "--no-save"])
    with pytest.raises(SystemExit, match="--tolerance 10.0 is not a fraction"):
        bench_main(["input", "--tolerance", "10", "--no-save"])
    with pytest.raises(SystemExit, match="--workers 1: a batch-norm group needs 2 or more"):
        bench_main(["bn-group", "--workers", "1", "--no-save"])
    with pytest.raises(SystemExit, match="--stretch-ms -1 is negative"):
        bench_main(["bn-group", "--stretch-ms", "0", "-1", "--no-save"])


class KnownRateReader:
    """A reader of known steady rate, ``1 / cost`` elements a second, on a simulated clock
    (``clock``, ``cpu_clock``): ``head_start`` batches are ready when the first is asked for,
    as a fresh tf.data reader's buffer is, then one every ``batch * cost`` seconds; reading a
    batch takes 0.1 ms of this process's CPU. (On the wall clock, such a test failed under a
    loaded machine's scheduling: once in CI, and once the background made 1 batch in 60 s.)"""

    def __init__(self, cost: float, batch: int, head_start: int):
        self.period, self.batch, self.head_start = batch * cost, batch, head_start
        self.now = self.cpu = 0.0
        self.served = 0

    def __iter__(self):
        return self

    def __next__(self) -> tuple:
        ready = max(0, self.served - self.head_start + 1) * self.period
        self.now = max(self.now, ready) + 1e-4
        self.cpu += 1e-4
        self.served += 1
        return (np.zeros(self.batch),)

    def clock(self) -> float:
        return self.now

    def cpu_clock(self) -> float:
        return self.cpu


def test_the_steady_state_is_the_known_rate_where_a_short_fresh_window_overstates_it():
    from lars_hvd.bench import steady
    from lars_hvd.bench.__main__ import parser

    defaults = parser().parse_args(["input"])  # the bench's default settings

    def measure(reader, **settings):
        settings = {"window": defaults.batches, "warmup": defaults.warmup,
                    "windows": defaults.windows, "tolerance": defaults.tolerance, **settings}
        return steady.measure(reader, batch=reader.batch, clock=reader.clock,
                              cpu_clock=reader.cpu_clock, **settings)

    # 200 elements a second; a head start of 20 batches, 15 of them after the warm-up, which
    # the first window of 20 reads (with it, the rate would be 7% too high)
    cost, batch = 0.005, 8
    found = measure(KnownRateReader(cost, batch, 20))
    assert found.steady, found
    assert found.rate == pytest.approx(1 / cost, rel=1e-6), found
    assert found.windows[0] > 3 / cost and found.buffered > 0.7, found  # the head start
    # Left out, not averaged in: over three windows the first would add a third.
    three = measure(KnownRateReader(cost, batch, 20), windows=3)
    assert three.rate == pytest.approx(1 / cost, rel=1e-6), three
    # Windows shorter than what was buffered: the first comes all from the buffer, which
    # lasts into the stretch, and the result says so.
    short = measure(KnownRateReader(cost, batch, 10), window=3)
    assert not short.steady and "NOT steady" in short.describe(), short
    # The method before the steady state: a fresh iterator, 5 batches untimed, 3 timed.
    reader = KnownRateReader(cost, batch, 20)
    for _ in range(5):
        next(reader)
    start = reader.clock()
    for _ in range(3):
        next(reader)
    assert 3 * batch / (reader.clock() - start) > 10 / cost


@pytest.mark.slow
def test_input_bench_times_every_recipe_and_path_on_generated_jpegs(tmp_path):
    bench_main(["input", "--images", "12", "--height", "60", "--width", "80", "--shards", "2",
                "--batch", "4", "--warmup", "1", "--batches", "2", "--windows", "3",
                "--rounds", "2", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "input.json").read_text())
    assert result["source"] == "12 generated 60x80 JPEGs"
    assert set(result["recipes"]) == {"resnet-train-224", "alexnet-train-227", "eval-224"}
    for rows in result["recipes"].values():
        assert set(rows) == {"now", "now-256"}
        for row in rows.values():
            assert len(row["rounds"]) == 2 and all(rate > 0 for rate in row["rounds"])
            assert all(len(w) == 3 for w in row["windows"])
            assert row["rounds"] == pytest.approx([2 / (1 / w[1] + 1 / w[2])
                                                   for w in row["windows"]])
            assert isinstance(row["steady"], bool) and "rounds steady" in row["steadiness"]
            assert row["per_core"] == pytest.approx(np.median(row["rounds"]) / result["cores"])
            assert row["per_cpu_second"] > 0
        assert rows["now"]["ratio_to_now"] == 1
    floor = result["alexnet_decode_only"]  # the crop's decode alone, once a round
    assert len(floor["rounds"]) == 2 and floor["per_core"] > 0
    needs = summary.cores_per_gpu({recipe: {path: row["per_core"] for path, row in rows.items()}
                                   for recipe, rows in result["recipes"].items()})
    assert set(needs["dgx1-p100"]) == {"resnet-train-224", "alexnet-train-227"}
    p100 = needs["dgx1-p100"]["alexnet-train-227"]
    assert p100["gpu_images_per_second"] == pytest.approx(2987)
    assert p100["needed"]["now"] == pytest.approx(
        2987 / result["recipes"]["alexnet-train-227"]["now"]["per_core"])
    assert re.search(r"ImageNet input, resnet-train-224, .* x now \| now \d+ \(1\.00x[^)]*\); "
                     r"now-256 ", summary.render(tmp_path))
    bench_main(["summary", "--out", str(tmp_path)])  # the summary alone, from the results
    assert (tmp_path / "summary.md").read_text() == summary.render(tmp_path)


def test_published_input_results_of_the_reader_before_still_render(tmp_path):
    """docs/results/bench/input.json holds the reader before its uint8 pixels, which left the
    code: its rows still render, with their ratios to it."""
    published = Path(__file__).resolve().parent.parent / "docs/results/bench/input.json"
    (tmp_path / "input.json").write_text(published.read_text())
    rows = [line for line in summary.render(tmp_path).splitlines()
            if line.startswith("| ImageNet input, eval-224,")]
    assert len(rows) == 1 and re.search(r"x before \| before \d+ \(1\.00x\); now \d+ "
                                        r"\([\d.]+x\); now-256 .* \| now >= 1\.00x before \|",
                                        rows[0]), rows
