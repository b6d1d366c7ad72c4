"""lars_hvd.planning.cost: its parts, the --dry-run --hardware view, and the published-run table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from lars_hvd.errors import UsageError
from lars_hvd.planning import collectives, cost, cost_validation, profiles

REPO = Path(__file__).resolve().parent.parent
P100 = profiles.HARDWARE["dgx1-p100"]


def test_ring_allreduce_formula():
    # 2 ranks, 1 GB at 1 GB/s, no latency: each rank sends and receives half, twice: 1 s.
    assert collectives.ring_seconds(2, 1e9, 1.0, 0.0) == pytest.approx(1.0)
    assert collectives.ring_seconds(1, 1e9, 1.0, 5.0) == 0.0
    # Latency: 2 (p - 1) hops a collective, one collective a fusion buffer.
    assert collectives.ring_seconds(4, 1.0, 1e9, 10e-6, buffers=3) == pytest.approx(
        3 * 6 * 10e-6, rel=1e-3)


def test_nccl_ring_and_tree_against_hand_computations():
    """NCCL's tuning model (src/graph/tuning.cc): a ring's 2 (p - 1) hops, 2 (nodes - 1) of
    them on the network; a tree's 2 ((local - 1) NVLink + log2(nodes) network) hops."""
    hw = replace(P100, intra_latency_seconds=1e-6, inter_latency_seconds=1e-5)  # 8 a node
    for nodes, tree_hops in ((2, 1), (16, 4), (1024, 10)):
        gpus = 8 * nodes
        tree = collectives.tree(hw, gpus, 0.0, 1)
        assert tree.latency == pytest.approx(2 * (7 * 1e-6 + tree_hops * 1e-5)), nodes
        ring = collectives.ring(hw, gpus, 0.0, 1)
        across = 2 * (nodes - 1)
        assert ring.latency == pytest.approx((2 * (gpus - 1) - across) * 1e-6 + across * 1e-5)
    # bandwidth: 1 GB over 16 nodes, no latency: the ring moves 2 (p-1)/p of it at the
    # slower of NVLink (40 GB/s) and the network (50 GB/s); the tree 2x at 90% of that
    flat = replace(P100, intra_latency_seconds=0, inter_latency_seconds=0)
    assert collectives.ring(flat, 128, 1e9, 1).seconds == pytest.approx(2 * 127 / 128 / 40)
    assert collectives.tree(flat, 128, 1e9, 1).seconds == pytest.approx(2 / (0.9 * 40))
    # NCCL takes the faster: the ring for large buffers on few nodes, the tree at scale
    v100 = profiles.HARDWARE["dgx1-v100"]
    assert cost.allreduce(v100, 16, 100e6).algorithm == "ring"
    assert cost.allreduce(v100, 1024, 100e6).algorithm == "tree"
    assert cost.allreduce(v100, 8, 100e6).why == "NCCL's ring inside one node (14 hops)"
    assert cost.allreduce(v100, 1024, 100e6, hierarchical=True).algorithm == "hierarchical"


def test_collnet_against_hand_computations():
    """SHARP (NCCL's CollNet, tuning.cc): 2 (local - 1) NVLink hops and one network hop at any
    number of nodes; the bytes twice at 90% of the NVLink rate, or of twice the network."""
    hw = replace(profiles.HARDWARE["dgx-h100"], intra_latency_seconds=1e-6,
                 inter_latency_seconds=1e-5)
    for nodes in (2, 16, 1024):
        collnet = collectives.collnet(hw, 8 * nodes, 0.0, 1)
        assert collnet.latency == pytest.approx(2 * 7 * 1e-6 + 1e-5), nodes
    flat = replace(hw, intra_latency_seconds=0, inter_latency_seconds=0)
    assert collectives.collnet(flat, 128, 1e9, 1).seconds == pytest.approx(2 / (0.9 * 360))
    slow = replace(flat, network_gbytes_per_second=100)  # below half NVLink's 360 GB/s
    assert collectives.collnet(slow, 128, 1e9, 1).seconds == pytest.approx(2 / (0.9 * 200))
    # NCCL takes it where faster; only a fabric with SHARP has it
    h100 = profiles.HARDWARE["dgx-h100"]
    assert cost.allreduce(h100, 768, 100e6, sharp=True).algorithm == "collnet"
    assert cost.allreduce(h100, 768, 100e6).algorithm == "tree"
    assert cost.allreduce(h100, 8, 100e6, sharp=True).algorithm == "ring"  # one node
    with pytest.raises(UsageError, match="--sharp: dgx1-v100's fabric has no in-network "
                                         "reduction.*profiles with one: dgx-a100, dgx-h100"):
        cost.allreduce(profiles.HARDWARE["dgx1-v100"], 1024, 100e6, sharp=True)


def test_compute_reproduces_its_published_points():
    resnet = P100.compute["resnet50"]
    for batch, rate in resnet.points:
        assert resnet.seconds(batch) == pytest.approx(batch / rate)
    assert 1e3 * resnet.fixed_seconds == pytest.approx(36.0, abs=0.1)  # small batches pay it
    alexnet = P100.compute["alexnet_bn"]
    assert alexnet.seconds(512) == pytest.approx(512 / 2987)
    assert alexnet.fixed_seconds == pytest.approx(resnet.fixed_seconds)
    single = profiles.HARDWARE["dgx1-v100"].compute["resnet50"]
    assert single.fixed_seconds == 0 and single.seconds(128) == pytest.approx(128 / 1270)


@pytest.mark.parametrize("hw,run,source", [
    (profiles.HARDWARE["dgx-h100"], profiles.MLPERF_H100_64, "MLPerf v3.0's 8 DGX H100"),
    (profiles.DGX_A100_MXNET, profiles.MLPERF_A100_64, "MLPerf v1.0's 8 DGX A100")])
def test_a_fixed_cost_a_step_is_set_by_its_calibration_row_alone(hw, run, source):
    resnet = hw.compute["resnet50"]
    (batch, rate), = resnet.points
    assert resnet.seconds(batch) == pytest.approx(batch / rate)  # the published point stays
    gpus, per_gpu, published = run
    projected = cost.project(hw, "resnet50", gpus, per_gpu, input_pipeline=False)
    assert projected.images_per_second == pytest.approx(published, rel=1e-6)
    assert 0 < resnet.fixed_seconds < resnet.seconds(per_gpu)
    # A small per-GPU batch is slower per image by the fixed cost: t(b) / b by hand.
    per_image = {b: (resnet.fixed_seconds + b * resnet.per_example_seconds) / b
                 for b in (35, 400)}
    assert per_image[35] > per_image[400]
    assert f"fixed cost a step set by {source}" in resnet.source
    with pytest.raises(ValueError, match=f"no fixed cost a step makes {hw.name} reach"):
        cost.calibrated(hw, "resnet50", (gpus, per_gpu, 1e9), "too fast")


def test_the_a100_profile_keeps_tensorflows_rate_with_mxnets_fixed_cost():
    tf, mxnet = profiles.HARDWARE["dgx-a100"].compute["resnet50"], \
        profiles.DGX_A100_MXNET.compute["resnet50"]
    assert tf.points == ((256, 2375.0),) and tf.seconds(256) == pytest.approx(256 / 2375)
    assert tf.fixed_seconds == mxnet.fixed_seconds > 0
    assert 35 / tf.seconds(35) < 0.75 * 2375  # 35 a GPU: a quarter below the published rate


def test_fusion_buffers_and_fp16_compression():
    hw = replace(P100, intra_latency_seconds=1e-3)
    one = cost.allreduce(hw, 8, 100 * 2**20).seconds
    three = cost.allreduce(hw, 8, 300 * 2**20).seconds  # 3 buffers of <= 128 MB
    bandwidth = 2 * 7 / 8 / (hw.nvlink_gbytes_per_second * 1e9)
    assert one == pytest.approx(14e-3 + 100 * 2**20 * bandwidth)
    assert three == pytest.approx(3 * 14e-3 + 300 * 2**20 * bandwidth)
    no_latency = replace(P100, intra_latency_seconds=0, inter_latency_seconds=0)
    fp32 = cost.project(no_latency, "resnet50", 64, 32)
    fp16 = cost.project(no_latency, "resnet50", 64, 32, fp16_allreduce=True)
    assert fp16.allreduce_ms == pytest.approx(fp32.allreduce_ms / 2)


def test_overlap_hides_what_backprop_can_and_never_the_last_buffer():
    fast = cost.project(P100, "resnet50", 8, 64, input_pipeline=False)
    assert fast.exposed_ms < fast.allreduce_ms  # hidden behind backprop ...
    assert fast.exposed_ms >= 1e3 * cost.CYCLE_SECONDS  # ... but one cycle is never hidden
    slow_hw = replace(P100, network_gbytes_per_second=0.2)
    slow = cost.project(slow_hw, "resnet50", 64, 64, input_pipeline=False)
    backward = cost.BACKWARD_FRACTION * slow.compute_ms
    assert slow.exposed_ms == pytest.approx(slow.allreduce_ms + 1e3 * cost.CYCLE_SECONDS
                                            - backward)
    assert slow.bound == "allreduce"
    # With accumulation only the last micro-batch's backward hides the allreduce.
    whole = cost.project(slow_hw, "resnet50", 64, 64, 1, input_pipeline=False)
    split = cost.project(slow_hw, "resnet50", 64, 32, 2, input_pipeline=False)
    assert split.exposed_ms > whole.exposed_ms


def test_the_bound_is_named():
    assert cost.project(P100, "resnet50", 8, 64).bound == "compute"
    starved = replace(P100, cores_per_gpu=0.2)
    assert cost.project(starved, "resnet50", 8, 64).bound == "input"


def test_the_input_term_uses_the_measured_rate_of_the_data_form():
    for form in cost.DATA_FORMS:
        p = cost.project(P100, "alexnet_bn", 8, 512, data_form=form)
        per_core = cost.INPUT_PER_CORE["crop"][form]
        assert p.input_ms == pytest.approx(1e3 * 512 / (5 * per_core))
        assert (p.input_per_core, p.data_form) == (per_core, form)
        resnet = cost.project(P100, "resnet50", 8, 64, data_form=form)
        assert resnet.input_ms == pytest.approx(1e3 * 64 / (5 * cost.INPUT_PER_CORE[
            "inception"][form]))
    # Batch 4,096 on a DGX-1 needs 2,987 img/s a P100: 5 cores at the crop's measured rate
    # from original JPEGs fall short, from pre-sized shards they do not.
    crop = cost.INPUT_PER_CORE["crop"]
    assert 5 * crop["originals"] < 2987 < 5 * crop["pre-sized"]
    assert cost.project(P100, "alexnet_bn", 8, 512).bound == "input"
    assert cost.project(P100, "alexnet_bn", 8, 512, data_form="pre-sized").bound == "compute"
    assert cost.project(P100, "alexnet_bn", 8, 512, input_pipeline=False).input_ms == 0
    with pytest.raises(ValueError, match="data_form must be one of"):
        cost.project(P100, "resnet50", 8, 64, data_form="lmdb")


def test_the_input_rates_are_the_published_steady_state_ones():
    """cost.INPUT_PER_CORE is docs/results/bench/full/input.json's, rounded to an image."""
    full = json.loads((REPO / "docs/results/bench/full/input.json").read_text())
    assert full["command"] == "python -m lars_hvd.bench input --out docs/results/bench/full"
    assert "window_batches" in full  # measured in the steady state
    for recipe, rows in (("inception", "resnet-train-224"), ("crop", "alexnet-train-227")):
        for form, path in (("originals", "now"), ("pre-sized", "now-256")):
            assert cost.INPUT_PER_CORE[recipe][form] == round(
                full["recipes"][rows][path]["per_core"]), (recipe, form)


@pytest.mark.multiprocess
def test_the_dry_run_takes_the_data_form_from_the_shards_manifest(tmp_path):
    (tmp_path / "dataset.json").write_text('{"train": 100000, "classes": 10, '
                                           '"shorter_side": {"train": 256}}')
    args = ["--dry-run", "--hardware", "dgx1-p100", "--model", "alexnet_bn", "--dataset",
            "imagenet", "--global-batch-size", "4096", "--world-size", "8"]
    sized = train(*args, "--data-dir", str(tmp_path))
    assert sized.returncode == 0, sized.stderr
    crop = cost.INPUT_PER_CORE["crop"]
    assert f"{crop['pre-sized']:,.0f} img/s a CPU core x 5 cores a GPU: the crop recipe from " \
        "shards pre-sized to 256 px" in sized.stdout
    originals = train(*args)
    assert f"{crop['originals']:,.0f} img/s a CPU core x 5 cores a GPU: the crop recipe from " \
        "original JPEGs" in originals.stdout
    assert "bound by                 input" in originals.stdout
    assert "bound by                 compute" in sized.stdout


def test_profiles_cite_their_numbers():
    for hw in profiles.HARDWARE.values():
        assert len(hw.sources) >= 2 and hw.compute, hw.name
        assert all(c.source and c.points for c in hw.compute.values()), hw.name
    with pytest.raises(UsageError, match="unknown --hardware 'dgx9'"):
        profiles.hardware("dgx9")
    with pytest.raises(UsageError, match="no published alexnet_bn throughput for dgx-a100"):
        cost.project(profiles.HARDWARE["dgx-a100"], "alexnet_bn", 8, 64)


def train(*args: str) -> subprocess.CompletedProcess:
    """``python -m lars_hvd.train ARGS``, which must not load TensorFlow or Horovod."""
    code = ("import sys\nfrom lars_hvd.train import cli\nrc = cli(sys.argv[1:])\n"
            "assert not {'tensorflow', 'horovod'} & set(sys.modules), 'TF or Horovod loaded'\n"
            "sys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=REPO)


@pytest.mark.multiprocess
def test_dry_run_projects_the_32k_preset_on_1024_p100s_without_tensorflow():
    out = train("--preset", "resnet50-imagenet-32k", "--dry-run", "--world-size", "1024",
                "--hardware", "dgx1-p100")
    assert out.returncode == 0, out.stderr
    p = cost.project(P100, "resnet50", 1024, 32)
    text = out.stdout
    assert ("projected on               1024 GPUs of dgx1-p100 (128 nodes), resnet50 at the "
            "published fp32 rate") in text
    assert f"per optimizer step       {p.step_ms:.1f} ms" in text
    assert f"epoch                    {cost.duration(39 * p.step_ms / 1e3)} (39 steps)" in text
    assert f"run                      {cost.duration(3510 * p.step_ms / 1e3)} (3510 steps" in text
    assert "bound by                 compute" in text


@pytest.mark.multiprocess
def test_hardware_list_and_mistakes_are_one_line():
    listed = train("--hardware", "list")
    assert listed.returncode == 0 and "dgx1-p100" in listed.stdout and "source:" in listed.stdout
    for args, message in [
        (("--dry-run", "--hardware", "dgx9"), "unknown --hardware 'dgx9'"),
        (("--hardware", "dgx1-p100"), "--hardware, --network-gbits and --sharp project a "
                                      "--dry-run"),
        (("--dry-run", "--sharp"), "--sharp prices a projection; add --hardware PROFILE"),
        (("--dry-run", "--hardware", "dgx-a100"), "no published small_cnn_bn throughput"),
        (("--dry-run", "--hardware", "dgx1-p100", "--network-gbits", "0"),
         "--network-gbits must be > 0"),
    ]:
        out = train(*args)
        assert out.returncode == 2 and out.stdout == "", (args, out.stdout)
        assert out.stderr.startswith("lars_hvd.train: error: ") and message in out.stderr
        assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_validation_table_is_recomputed_and_committed():
    rows = cost_validation.rows()
    assert len(rows) >= 5 and len({r["source"].split(",")[0] for r in rows}) >= 5
    for r in rows:
        assert r["projected"] > 0 and r["assumptions"] and r["source"]
        if not cost_validation.within(r):
            assert r["miss"], f"{r['run']}: a miss needs its reason"
    checks = [r for r in rows if not r["calibrates"]]  # a run that sets a parameter
    assert 0 < len(checks) < len(rows) and sum(r["gpus"] >= 1000 for r in checks) >= 4
    assert sum(map(cost_validation.within, checks)) >= 0.8 * len(checks)  # the aim: 80%
    timed = [r for r in checks if r.get("epochs")]  # MLPerf's runs, as times to train
    for r in timed:
        assert r["projected_minutes"] == pytest.approx(
            r["epochs"] * cost_validation.IMAGENET / r["projected"] / 60)
    assert len(timed) >= 5 and sum(abs(r["time_error"]) <= 0.4 for r in timed) >= 0.8 * len(
        timed)
    assert cost_validation.within({"error": 0.3, "unit": cost_validation.TIME_TO_TRAIN})
    assert not cost_validation.within({"error": 0.3, "unit": "images/s"})
    committed = (REPO / "docs" / "results" / "cost-validation.md").read_text()
    assert committed == cost_validation.table(), \
        "rerun: python -m lars_hvd.planning.cost_validation docs/results/cost-validation.md"


def test_the_dry_run_prices_the_hierarchical_allreduce_it_asks_for():
    """--hierarchical-allreduce in a dry run: a ring inside each node, then one across the
    nodes, in place of NCCL's choice (at 1,024 V100s its tree, which is faster)."""
    from lars_hvd.planning import cli, dry_run
    from lars_hvd.planning.plan import resolve

    def projected(*flags):
        config, _ = cli.parse_args(["--preset", "resnet50-imagenet-32k", *flags])
        text = dry_run.projection(config, resolve(config, 1024), "dgx1-v100", None)
        return float(re.search(r"exposed of ([\d.]+) ms", text).group(1)), text

    (nccl, chosen), (hierarchical, asked) = projected(), projected("--hierarchical-allreduce")
    gradients = 4 * cost.PARAMETERS["resnet50"]
    v100 = profiles.hardware("dgx1-v100")
    expected = cost.allreduce(v100, 1024, gradients, hierarchical=True).seconds
    assert hierarchical == pytest.approx(1e3 * expected, abs=0.01)
    assert nccl == pytest.approx(1e3 * cost.allreduce(v100, 1024, gradients).seconds, abs=0.01)
    assert nccl < hierarchical, (nccl, hierarchical)
    assert "allreduce                NCCL's tree (14 network hops, 2 x log2 of 128 nodes)" in chosen
    assert ("allreduce                Horovod's hierarchical, as asked: a ring inside each node "
            "of 8, then one across 128 nodes") in asked


def test_the_dry_run_prices_sharp_where_asked_and_the_fabric_has_it():
    from lars_hvd.planning import cli, dry_run
    from lars_hvd.planning.plan import resolve

    config, args = cli.parse_args(["--preset", "resnet50-imagenet-32k", "--dry-run",
                                   "--hardware", "dgx-h100", "--sharp"])
    assert args.sharp
    text = dry_run.projection(config, resolve(config, 1024), "dgx-h100", None, args.sharp)
    assert ("allreduce                NCCL's collnet (SHARP reduces across the 128 nodes in the "
            "switches: 1 network hop), faster here than its tree") in text
    exposed = float(re.search(r"exposed of ([\d.]+) ms", text).group(1))
    h100 = profiles.hardware("dgx-h100")
    gradients = 4 * cost.PARAMETERS["resnet50"]
    assert exposed == pytest.approx(
        1e3 * cost.allreduce(h100, 1024, gradients, sharp=True).seconds, abs=0.01)
    with pytest.raises(UsageError, match="--sharp: dgx2h's fabric has no in-network"):
        dry_run.projection(config, resolve(config, 1024), "dgx2h", None, True)


def test_a_batch_norm_group_waits_for_horovods_cycle_at_each_layer():
    """--bn-group: 2 x 53 dependent allreduces a ResNet-50 micro-batch, each one of
    Horovod's cycles and a ring over the group."""
    v100 = profiles.HARDWARE["dgx1-v100"]
    layers, channels = cost.BATCH_NORM["resnet50"]
    assert cost.bn_group_seconds(v100, "resnet50", 1) == 0
    ring = cost.allreduce(v100, 2, 2 * layers * 8 * channels / layers,
                          buffers=2 * layers).seconds
    assert ring == pytest.approx(2 * layers * 2 * v100.intra_latency_seconds, rel=0.01)
    assert cost.bn_group_seconds(v100, "resnet50", 2) == pytest.approx(
        2 * layers * cost.CYCLE_SECONDS + ring)
    # a group across two nodes: its rings pay the network's latency and bandwidth
    assert cost.bn_group_seconds(v100, "resnet50", 16) > cost.bn_group_seconds(v100, "resnet50", 8)
    with pytest.raises(UsageError, match="does not know vgg16's batch-norm layers"):
        cost.bn_group_seconds(P100, "vgg16", 2)


def test_the_dry_run_prices_the_batch_norm_group_it_asks_for():
    from lars_hvd.planning import cli, dry_run
    from lars_hvd.planning.plan import resolve

    def projected(*flags):
        config, _ = cli.parse_args(["--preset", "resnet50-imagenet-32k", *flags])
        return dry_run.projection(config, resolve(config, 1024), "dgx1-v100", None)

    v100 = profiles.hardware("dgx1-v100")
    plain, grouped = projected(), projected("--bn-group", "8")
    added = cost.bn_group_seconds(v100, "resnet50", 8)
    assert "batch-norm group" not in plain
    assert (f"batch-norm group         {1e3 * added:.1f} ms a micro-batch: 106 allreduces over "
            f"8 GPUs, one after another, each a Horovod cycle (1 ms) and a ring") in grouped
    step = [float(re.search(r"per optimizer step\s+([\d.]+) ms", t).group(1))
            for t in (plain, grouped)]
    assert step[1] - step[0] == pytest.approx(1e3 * added, abs=0.11)
    assert "bound by                 batch-norm group" in grouped
