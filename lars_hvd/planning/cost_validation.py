"""The cost model (``cost``) against published runs: each one's projection, error and why.

    python -m lars_hvd.planning.cost_validation      # the table, to the terminal
    python -m lars_hvd.planning.cost_validation docs/results/cost-validation.md

No parameter of lars_hvd.planning.cost comes from these runs but those the calibration rows
set, which say so and are not counted as validation (each run's own setup -- its network,
GPUs a node, per-GPU batch -- is an input, and says so). tests/test_cost.py recomputes the
table and compares it with the committed file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

from lars_hvd.data import DATASETS
from lars_hvd.planning import cost, profiles

IMAGENET = DATASETS["imagenet"].train  # training images
TIME_TO_TRAIN = "minutes to train"


@dataclass(frozen=True)
class Published:
    run: str
    source: str
    published: float
    unit: str  # what `published` and the projection measure
    assumptions: str
    project: Callable[[], float]
    miss: str = ""  # why the model misses, where it does
    calibrates: str = ""  # the parameter this run sets (then it is no validation)
    gpus: int = 0  # the run's GPUs (for the count at 1,000 or more)
    epochs: float = 0  # where the published run is a throughput whose time to train is known:
    minutes: float = 0  # its epochs and minutes (MLPerf's score)


def run_minutes(hw: cost.Hardware, model: str, gpus: int, global_batch: int, epochs: int,
                **kwargs) -> float:
    p = cost.project(hw, model, gpus, global_batch / gpus, **kwargs)
    return epochs * (IMAGENET // global_batch) * p.step_ms / 60e3


def images_per_second(hw: cost.Hardware, model: str, gpus: int, per_gpu: int,
                      sharp: bool = False) -> float:
    return cost.project(hw, model, gpus, per_gpu, input_pipeline=False,
                        sharp=sharp).images_per_second


def efficiency(hw: cost.Hardware, model: str, gpus: int, per_gpu: int) -> float:
    p = cost.project(hw, model, gpus, per_gpu, input_pipeline=False, nccl_tree=False)
    return p.compute_ms / p.step_ms  # against one GPU at the same batch, as published


def epoch_speedup(hw: cost.Hardware, model: str, small: int, large: int, **kwargs) -> float:
    """How much faster an epoch is at global batch ``large`` than ``small``, one node
    (``kwargs``: ``project``'s; no input pipeline unless asked)."""
    gpus = hw.gpus_per_node
    kwargs.setdefault("input_pipeline", False)
    per_epoch = [cost.project(hw, model, gpus, b / gpus, **kwargs).step_ms / b
                 for b in (small, large)]
    return per_epoch[0] / per_epoch[1]


P100 = profiles.HARDWARE["dgx1-p100"]


def paper_with_input() -> str:
    """The paper's DGX-1 speed-up with the input pipeline in, from each data form."""
    speedups = {form: epoch_speedup(P100, "alexnet_bn", 512, 4096, input_pipeline=True,
                                    data_form=form) for form in cost.DATA_FORMS}
    return ", ".join(f"{x:.2f}x from {cost.FORM_TEXT[form]}" for form, x in speedups.items())


def mlperf(version: str, system: str) -> str:
    return (f"MLPerf Training {version}, NVIDIA {system}: the steady rate between "
            f"evaluations, the median over the blocks of its 5 runs (github.com/mlcommons/"
            f"training_results_{version}, NVIDIA/results/{system}/resnet/result_[0-4].txt; "
            f"python -m lars_hvd.planning.mlperf_logs)")


MLPERF_SETUP = ("MXNet, fp16, DALI decoding on the GPUs (no CPU input counted); batch-norm "
                "groups reduced inside MXNet, not priced")
A100_MXNET = profiles.DGX_A100_MXNET  # 80 GB
A100_40GB_MXNET = replace(A100_MXNET, memory_gbytes_per_second=1555)  # its datasheet
V0_7_TO_V1_0 = ("NVIDIA: its MLPerf v1.0 software up to 2.1x faster per chip than its v0.7 "
                "software on the same A100 (developer.nvidia.com/blog/mlperf-v1-0-training-"
                "benchmarks-insights-into-a-record-setting-performance)")

# Horovod's benchmark: 128 servers of 4 Pascal GPUs on PCIe, 25 Gb/s RoCE.
HOROVOD_CLUSTER = replace(P100, name="horovod-512", gpus_per_node=4,
                          nvlink_gbytes_per_second=10.0, network_gbytes_per_second=25 / 8)

RUNS = [
    Published(
        "Goyal et al. 2017: ResNet-50, batch 8,192 on 256 P100 (32 servers of 8), 90 epochs",
        "Goyal et al., 'Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour', "
        "arXiv:1706.02677", 60.0, TIME_TO_TRAIN,
        "network 50 Gb/s Ethernet a server (the paper); input decoded on 5 cores a GPU; "
        "fp32; training time only; rings (Gloo's allreduce, 2017: no NCCL tree)",
        lambda: run_minutes(replace(P100, network_gbytes_per_second=50 / 8), "resnet50", 256,
                            8192, 90, nccl_tree=False),
        "the per-GPU rate (TensorFlow, synthetic data, 2017: 195 img/s at 32) is above what "
        "Caffe2 reached on real data (the published hour is 125 img/s a GPU)", gpus=256),
    Published(
        "Akiba et al. 2017: ResNet-50, batch 32,768 on 1,024 P100 (128 servers of 8), 90 "
        "epochs", "Akiba, Suzuki, Fukuda, 'Extremely Large Minibatch SGD: Training ResNet-50 "
        "on ImageNet in 15 Minutes', arXiv:1711.04325", 15.0, TIME_TO_TRAIN,
        "InfiniBand FDR, 56 Gb/s a server; gradients sent as fp16 (the paper); fp32 compute; "
        "training time only; a ring allreduce (the paper; NCCL 2.0 had no tree)",
        lambda: run_minutes(replace(P100, network_gbytes_per_second=56 / 8), "resnet50", 1024,
                            32768, 90, fp16_allreduce=True, nccl_tree=False),
        "as Goyal et al.: Chainer's per-GPU rate at batch 32 was below TensorFlow's benchmark "
        "(the 15 minutes are 125 img/s a GPU)", gpus=1024),
    Published(
        "You et al. 2017 (this paper): AlexNet-BN on one DGX-1, an epoch at batch 4,096 vs "
        "512", "You, Gitman, Ginsburg, arXiv:1708.03888, sec. 1 (batch 4096 about 3x faster "
        "than 512)", 3.0, "x faster per epoch",
        "8 P100 on NVLink; the paper's claim is about compute and communication, so the input "
        "pipeline is left out (with it, at 5 cores a GPU and the steady-state rates this "
        f"project's reader is measured at: {paper_with_input()})",
        lambda: epoch_speedup(P100, "alexnet_bn", 512, 4096),
        "the fixed cost a step (36 ms, ResNet-50's on TensorFlow) is assumed for Caffe's "
        "AlexNet too", gpus=8),
    Published(
        "NVIDIA: ResNet-50 v1.5 on a DGX-1V, 8 V100, batch 256 a GPU",
        "NVIDIA DeepLearningExamples, TensorFlow ResNet-50 v1.5 (AMP + XLA): 9,510 img/s on "
        "8 GPUs", 9510.0, "images/s",
        "mixed precision, fp32 gradients allreduced; synthetic input (the benchmark's "
        "throughput mode)",
        lambda: images_per_second(profiles.HARDWARE["dgx1-v100"], "resnet50", 8, 256), gpus=8),
    Published(
        "NVIDIA: ResNet-50 v1.5 on a DGX A100, 8 A100, batch 256 a GPU",
        "NVIDIA DeepLearningExamples, TensorFlow ResNet-50 v1.5 (AMP + XLA): 17,400 img/s on "
        "8 GPUs", 17400.0, "images/s",
        "as the V100 row",
        lambda: images_per_second(profiles.HARDWARE["dgx-a100"], "resnet50", 8, 256), gpus=8),
    Published(
        "Horovod: Inception V3 on 512 Pascal GPUs (128 servers of 4), batch 64 a GPU",
        "Sergeev, Del Balso, 'Horovod: fast and easy distributed deep learning in "
        "TensorFlow', arXiv:1802.05799 (90% scaling efficiency)", 0.90,
        "scaling efficiency",
        "25 Gb/s RoCE a server; PCIe inside it (10 GB/s assumed); tf_cnn_benchmarks' "
        "synthetic data; flat NCCL ring (NCCL 2.0, no tree); batch 64 a GPU (tf_cnn_benchmarks' "
        "default)",
        lambda: efficiency(HOROVOD_CLUSTER, "inception_v3", 512, 64), gpus=512),
    Published(
        "Horovod: VGG-16 on 512 Pascal GPUs (128 servers of 4), batch 64 a GPU",
        "Sergeev, Del Balso, arXiv:1802.05799 (68% scaling efficiency)", 0.68,
        "scaling efficiency", "as the Inception V3 row; 138M parameters",
        lambda: efficiency(HOROVOD_CLUSTER, "vgg16", 512, 64), gpus=512),
]


def mlperf_run(title: str, version: str, system: str, hw: cost.Hardware, gpus: int,
               per_gpu: int, derived: tuple[float, float, float], setup: str = "",
               sharp: bool = False, **kwargs) -> Published:
    """An MLPerf ResNet-50 submission: ``derived`` = (steady images/s, epochs, minutes) of
    its 5 result logs, by ``python -m lars_hvd.planning.mlperf_logs``."""
    rate, epochs, minutes = derived
    return Published(f"MLPerf {version}: ResNet-50 on {title}, batch {gpus * per_gpu:,} "
                     f"({per_gpu} a GPU)", mlperf(version, system), rate, "images/s",
                     MLPERF_SETUP + setup + ("; SHARP (NCCL's CollNet)" if sharp else ""),
                     lambda: images_per_second(hw, "resnet50", gpus, per_gpu, sharp=sharp),
                     gpus=gpus, epochs=epochs, minutes=minutes, **kwargs)


H100 = profiles.HARDWARE["dgx-h100"]
MLPERF_RUNS = [
    mlperf_run("1 DGX-1 (8 V100)", "v0.6", "dgx1_ngc19.05_mxnet", profiles.HARDWARE["dgx1-v100"],
               8, 208, (11116, 60, 115.221)),
    mlperf_run("130 DGX-1 (1,040 V100)", "v0.6", "dgx1_n130_ngc19.05_mxnet",
               profiles.HARDWARE["dgx1-v100"], 1040, 52, (1141097, 86, 1.691),
               "; 4x EDR a node; NCCL 2.4.6 (its tree)"),
    mlperf_run("96 DGX-2H (1,536 V100)", "v0.6", "dgx2h_n96_ngc19.05_mxnet",
               profiles.HARDWARE["dgx2h"], 1536, 39, (1611531, 90, 1.332),
               "; 16 GPUs a node on NVSwitch"),
    mlperf_run("96 DGX A100 (768 A100 40 GB)", "v0.7", "dgxa100_n96_ngc20.06_mxnet",
               A100_40GB_MXNET, 768, 45, (1244758, 59, 1.059), "; 8x HDR a node",
               miss="the software: the fixed cost a step is v1.0's (MXNet 21.05), and "
                    + V0_7_TO_V1_0),
    mlperf_run("1 DGX A100 (8 A100 80 GB)", "v1.0", "dgxa100_ngc21.05_mxnet", A100_MXNET,
               8, 408, (26474, 35, 28.771)),
    mlperf_run("8 DGX A100 (64 A100 80 GB)", "v1.0", "dgxa100_n8_ngc21.05_mxnet", A100_MXNET,
               64, 204, (profiles.MLPERF_A100_64[2], 45, 4.909), "; 8x HDR a node",
               calibrates="the A100's fixed cost a step (profiles.MLPERF_A100_64)"),
    mlperf_run("128 DGX A100 (1,024 A100 80 GB)", "v1.1", "dgxa100_n128_ngc21.09_mxnet",
               A100_MXNET, 1024, 35, (2268556, 60, 0.575), sharp=True),
    mlperf_run("1 DGX H100 (8 H100)", "v3.0", "dgxh100_ngc23.04_mxnet", H100, 8, 400,
               (profiles.MLPERF_H100_8[2], 35, 13.601),
               calibrates="the dgx-h100 profile's compute rate (profiles.MLPERF_H100_8)"),
    mlperf_run("8 DGX H100 (64 H100)", "v3.0", "dgxh100_n8_ngc23.04_mxnet", H100, 64, 50,
               (profiles.MLPERF_H100_64[2], 35, 2.664), "; 8x NDR a node",
               calibrates="the dgx-h100 profile's fixed cost a step (profiles.MLPERF_H100_64)"),
    mlperf_run("64 DGX H100 (512 H100)", "v3.0", "dgxh100_n64_ngc23.04_mxnet", H100, 512, 40,
               (2223766, 50, 0.503), sharp=True),
    mlperf_run("96 DGX H100 (768 H100)", "v3.0", "dgxh100_n96_ngc23.04_mxnet", H100, 768, 42,
               (3387091, 56, 0.369), sharp=True),
]
RUNS += MLPERF_RUNS


def rows() -> list[dict]:
    """Every published run with its projection and relative error."""
    out = []
    for r in RUNS:
        projected = r.project()
        out.append({"run": r.run, "source": r.source, "unit": r.unit,
                    "published": r.published, "projected": projected,
                    "error": projected / r.published - 1, "assumptions": r.assumptions,
                    "miss": r.miss, "calibrates": r.calibrates, "gpus": r.gpus})
        if r.epochs:  # the time to train those epochs at the projected rate
            minutes = r.epochs * IMAGENET / projected / 60
            out[-1].update(epochs=r.epochs, minutes=r.minutes, projected_minutes=minutes,
                           time_error=minutes / r.minutes - 1)
    return out


def within(row: dict) -> bool:
    """The model's aim: +-25% on a throughput, speed-up or efficiency, +-40% on a time to
    train (which also carries the epochs, evaluation and start-up a rate leaves out)."""
    return abs(row["error"]) <= (0.40 if row["unit"] == TIME_TO_TRAIN else 0.25)


def number(value: float, unit: str) -> str:
    if unit == "scaling efficiency":
        return f"{100 * value:.0f}%"
    if unit == "images/s":
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table() -> str:
    lines = ["| run | published | projected | error | assumptions | source | why it misses |",
             "|---|---|---|---|---|---|---|"]
    table_rows = rows()
    for r in table_rows:
        error = f"{100 * r['error']:+.0f}%"
        if r["calibrates"]:
            error += f" (calibration, not validation: it sets {r['calibrates']})"
        lines.append(
            f"| {r['run']} | {number(r['published'], r['unit'])} {r['unit']} | "
            f"{number(r['projected'], r['unit'])} | {error} | "
            f"{r['assumptions']} | {r['source']} | {r['miss'] or '-'} |")
    checks = [r for r in table_rows if not r["calibrates"]]
    scale = [r for r in checks if r["gpus"] >= 1000]
    timed = sum(r["unit"] == TIME_TO_TRAIN for r in checks)
    lines.append("")
    lines.append(f"{sum(map(within, checks))} of {len(checks)} validation rows within their "
                 f"bound (the calibration rows left out): +-25%, and +-40% for the {timed} "
                 f"times to train; {sum(abs(r['error']) <= 0.25 for r in checks)} within "
                 f"+-25%. At 1,000 GPUs or more, {sum(map(within, scale))} of {len(scale)}. "
                 f"Written by `python -m lars_hvd.planning.cost_validation "
                 f"docs/results/cost-validation.md`.")
    return "\n".join(lines + ["", *time_table(table_rows)]) + "\n"


def time_table(table_rows: list[dict]) -> list[str]:
    """MLPerf's runs as times to train: the epochs each took at the projected rate."""
    lines = ["| MLPerf run | epochs | published minutes | projected minutes | error |",
             "|---|---:|---:|---:|---|"]
    timed = [r for r in table_rows if r.get("epochs")]
    for r in timed:
        lines.append(f"| {r['run']} | {r['epochs']:g} | {r['minutes']:.3f} | "
                     f"{r['projected_minutes']:.3f} | {100 * r['time_error']:+.0f}%"
                     f"{' (calibration)' if r['calibrates'] else ''} |")
    checks = [r for r in timed if not r["calibrates"]]
    close = sum(within({"error": r["time_error"], "unit": TIME_TO_TRAIN}) for r in checks)
    lines += ["", f"Time to train: {close} of {len(checks)} within +-40% (the calibration "
              f"rows left out). Projected: the epochs the run took (the median of its 5) "
              f"at the projected rate, training only; MLPerf's minutes (run_start to "
              f"run_stop, its score) also hold the evaluations and the first epochs' "
              f"start-up."]
    return lines


if __name__ == "__main__":
    text = table()
    if len(sys.argv) > 1:
        from lars_hvd.files import atomic_write_text

        atomic_write_text(sys.argv[1], text)
        print(f"written to {sys.argv[1]}")
    else:
        print(text, end="")
