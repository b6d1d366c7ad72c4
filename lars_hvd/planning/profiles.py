"""The hardware profiles of ``--dry-run --hardware``: published numbers, each with its source
(``--hardware list`` prints them), and the calibration rows that set a profile's parameter
(docs/cost.md). The model they feed is ``lars_hvd.planning.cost``. No TensorFlow."""

from __future__ import annotations

from dataclasses import replace

from lars_hvd.errors import UsageError
from lars_hvd.planning.cost import Compute, Hardware, calibrated

TF_BENCH_P100 = ("TensorFlow performance benchmarks, DGX-1 (8x P100), May 2017, synthetic "
                 "data, fp32 (tensorflow/docs_src/performance/benchmarks.md)")
NVIDIA_DLE = ("NVIDIA DeepLearningExamples, TensorFlow ResNet-50 v1.5, AMP + XLA, batch 256, "
              "1 GPU")
NVIDIA_DLE_MXNET = ("NVIDIA DeepLearningExamples, MXNet ResNet-50 v1.5, mixed precision, batch "
                    "512, 1 A100 80 GB (mxnet-22.10 container; data and compute)")
P100_RESNET50 = Compute(((32, 195.0), (64, 219.0)), "fp32", TF_BENCH_P100)
P100_COMPUTE = {
    "resnet50": P100_RESNET50,
    # One published point; the fixed per-step cost is assumed to be ResNet-50's on the same
    # GPU and framework (36 ms): docs/cost.md, the paper's DGX-1 claim.
    "alexnet_bn": Compute(((512, 2987.0),), "fp32", TF_BENCH_P100 + "; AlexNet at batch 512; "
                          "the fixed cost a step is ResNet-50's (assumed)",
                          assumed_fixed_seconds=P100_RESNET50.fixed_seconds),
    "inception_v3": Compute(((64, 142.0),), "fp32", TF_BENCH_P100),
    "vgg16": Compute(((64, 154.0),), "fp32", TF_BENCH_P100),
}

# MLPerf Training's published runs that set a profile's parameter (calibration rows): (GPUs,
# per-GPU batch, images/s), the steady rate between evaluations of the run's 5 result logs
# (``python -m lars_hvd.planning.mlperf_logs``; docs/cost.md).
MLPERF_H100_8 = (8, 400, 55774.0)  # v3.0 dgxh100_ngc23.04_mxnet: the H100's rate
MLPERF_H100_64 = (64, 50, 293442.0)  # v3.0 dgxh100_n8_ngc23.04_mxnet: its fixed cost a step
MLPERF_A100_64 = (64, 204, 197841.0)  # v1.0 dgxa100_n8_ngc21.05_mxnet: the A100's

HARDWARE = {
    "dgx1-p100": Hardware(
        "dgx1-p100", "DGX-1, 8x Tesla P100 SXM2 (NVLink 1), 4x EDR InfiniBand: the paper's",
        8, 40 / 8, 732, 40, 50, P100_COMPUTE,
        ("DGX-1 datasheet: 2x 20-core Xeon E5-2698 v4 (5 cores a GPU), 4x 100 Gb/s EDR IB",
         "P100 SXM2 datasheet: 732 GB/s HBM2; NVLink 1: 4 links x 20 GB/s each way",
         "NVLink bus bandwidth for a ring: half of 80 GB/s each way on the cube-mesh "
         "(assumed: a ring uses 2 of the 4 links)")),
    "dgx1-v100": Hardware(
        "dgx1-v100", "DGX-1V, 8x Tesla V100 SXM2 (NVLink 2), 4x EDR InfiniBand",
        8, 40 / 8, 900, 75, 50,
        {"resnet50": Compute(((256, 1270.0),), "mixed", NVIDIA_DLE + " (V100 16 GB)")},
        ("DGX-1 datasheet (as dgx1-p100)",
         "V100 SXM2 datasheet: 900 GB/s HBM2; NVLink 2: 6 links x 25 GB/s each way",
         "NVLink bus bandwidth: half of 150 GB/s on the cube-mesh (assumed, as dgx1-p100)")),
    "dgx2h": Hardware(
        "dgx2h", "DGX-2H, 16x Tesla V100 SXM3 32 GB (NVSwitch), 8x EDR InfiniBand",
        16, 48 / 16, 900, 120, 100,
        {"resnet50": Compute(((256, 1270.0),), "mixed", NVIDIA_DLE + " (V100 16 GB; the "
                             "DGX-2H's V100 runs at 450 W, so this is a lower bound)")},
        ("DGX-2H datasheet: 2x 24-core Xeon Platinum 8174 (3 cores a GPU), 8x 100 Gb/s EDR "
         "IB for the cluster (MLPerf's system file counts 10 adapters, with storage's)",
         "V100 SXM3 32 GB: 900 GB/s HBM2; NVLink 2 through NVSwitch: 6 links x 25 GB/s each way",
         "NVSwitch bus bandwidth: 80% of 150 GB/s (assumed, as dgx-a100)")),
    "dgx-a100": Hardware(
        "dgx-a100", "DGX A100, 8x A100 SXM4 (NVSwitch), 8x HDR InfiniBand",
        8, 128 / 8, 1555, 240, 200,
        {"resnet50": Compute(((256, 2375.0),), "mixed", NVIDIA_DLE + " (A100 40 GB)")},
        ("DGX A100 datasheet: 2x 64-core EPYC 7742 (16 cores a GPU), 8x 200 Gb/s HDR IB",
         "A100 40 GB datasheet: 1,555 GB/s HBM2; NVLink 3: 300 GB/s each way",
         "NVSwitch bus bandwidth: 80% of 300 GB/s (assumed)"),
        sharp="SHARP in its HDR switches: MLPerf v1.1's 128 DGX A100 ran NCCL's CollNet on it "
              "(NVIDIA/benchmarks/resnet/implementations/mxnet/"
              "config_DGXA100_multi_128x8x35_sharp.sh: SBATCH_NETWORK=sharp)"),
    "dgx-h100": Hardware(
        "dgx-h100", "DGX H100, 8x H100 SXM5 (NVSwitch), 8x NDR InfiniBand",
        8, 112 / 8, 3350, 360, 400,
        {"resnet50": Compute(((400, MLPERF_H100_8[2] / 8),), "mixed",
                             "MLPerf Training v3.0, NVIDIA dgxh100_ngc23.04_mxnet: {2:,.0f} "
                             "img/s on {0} H100 at {1} a GPU, the steady rate between "
                             "evaluations (a calibration row)".format(*MLPERF_H100_8))},
        ("DGX H100 datasheet: 2x 56-core Xeon 8480C (14 cores a GPU), 8x 400 Gb/s NDR",
         "H100 SXM5 datasheet: 3,350 GB/s HBM3; NVLink 4: 450 GB/s each way",
         "NVSwitch bus bandwidth: 80% of 450 GB/s (assumed, as dgx-a100)"),
        sharp="SHARP in its NDR switches: MLPerf v3.0's 64 and 96 DGX H100 ran NCCL's CollNet "
              "on it (NVIDIA/benchmarks/resnet/implementations/mxnet/"
              "config_DGXH100_multi_{64x8x40,96x8x42}.sh: SBATCH_NETWORK=sharp)"),
}


# The H100's fixed cost a step: MLPerf v3.0's 8 DGX H100, the same stack as the profile's point
# (MXNet 23.04) at a small per-GPU batch.
HARDWARE["dgx-h100"] = calibrated(
    HARDWARE["dgx-h100"], "resnet50", MLPERF_H100_64,
    "the fixed cost a step set by MLPerf v3.0's 8 DGX H100 ({} GPUs at {} a GPU, {:,.0f} "
    "img/s: a calibration row)".format(*MLPERF_H100_64))


# The A100 as NVIDIA's MLPerf submissions run ResNet-50 (MXNet, DALI decoding on the GPUs): its
# published single-GPU point, and the fixed cost a step set by MLPerf v1.0's 8 DGX A100, the
# software generation (MXNet 21.05) of the v1.0 and v1.1 rows it is checked on.
DGX_A100_MXNET = calibrated(
    replace(HARDWARE["dgx-a100"], about="DGX A100 as MLPerf's MXNet runs use it (80 GB)",
            memory_gbytes_per_second=2039,  # A100 80 GB datasheet: 2,039 GB/s HBM2e
            compute={"resnet50": Compute(((512, 3410.52),), "mixed", NVIDIA_DLE_MXNET)}),
    "resnet50", MLPERF_A100_64,
    "the fixed cost a step set by MLPerf v1.0's 8 DGX A100 ({} GPUs at {} a GPU, {:,.0f} "
    "img/s: a calibration row)".format(*MLPERF_A100_64))
# TensorFlow's rate at 256 a GPU is the profile's; its fixed cost a step is MXNet's (assumed:
# no published TensorFlow run at a small per-GPU batch).
HARDWARE["dgx-a100"] = replace(HARDWARE["dgx-a100"], compute={"resnet50": replace(
    HARDWARE["dgx-a100"].compute["resnet50"],
    assumed_fixed_seconds=DGX_A100_MXNET.compute["resnet50"].fixed_seconds,
    source=HARDWARE["dgx-a100"].compute["resnet50"].source + "; the fixed cost a step "
    "MXNet's (profiles.DGX_A100_MXNET, set by MLPerf v1.0's 8 DGX A100), assumed for TensorFlow")})


def hardware(name: str, network_gbits: float | None = None) -> Hardware:
    """A profile by name (``--hardware``), its network optionally replaced (Gb/s a node)."""
    if name not in HARDWARE:
        raise UsageError(f"unknown --hardware {name!r}; choose one of "
                         f"{', '.join(HARDWARE)} (--hardware list describes them).")
    hw = HARDWARE[name]
    return hw if network_gbits is None else replace(hw, network_gbytes_per_second=network_gbits / 8)


def describe() -> str:
    """``--hardware list``: every profile with its numbers and their sources."""
    lines = []
    for hw in HARDWARE.values():
        lines.append(f"{hw.name:<10} {hw.about}: {hw.gpus_per_node} GPUs a node, "
                     f"{hw.cores_per_gpu:g} CPU cores a GPU, {hw.memory_gbytes_per_second:g} "
                     f"GB/s memory, NVLink ring {hw.nvlink_gbytes_per_second:g} GB/s, network "
                     f"{hw.network_gbytes_per_second:g} GB/s a node")
        for model, c in sorted(hw.compute.items()):
            points = ", ".join(f"{r:.0f} img/s at {b}" for b, r in c.points)
            lines.append(f"{'':<10}   {model} ({c.precision}): {points}; fixed "
                         f"{1e3 * c.fixed_seconds:.1f} ms a step: {c.source}")
        lines.extend(f"{'':<10}   source: {s}" for s in hw.sources)
        if hw.sharp:
            lines.append(f"{'':<10}   --sharp: {hw.sharp}")
    return "\n".join(lines)
