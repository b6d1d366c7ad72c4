"""What a run will cost on N GPUs: step, epoch and run time projected from published hardware
numbers, with the resource that bounds the step. No TensorFlow.

The model (docs/cost.md; every parameter below names its source, or says it is assumed):

- **Compute** of a micro-batch of b examples on one GPU: ``t(b) = fixed + b * per_example``.
  Two published single-GPU throughputs at two batches give both terms (a small per-GPU batch
  runs below peak); where a source gives one batch, ``fixed`` is 0 and the rate is constant,
  unless a published run at a small per-GPU batch calibrates it (``calibrated``).
  Backward is 2/3 of it (forward:backward flops 1:2).
- **Input**: each GPU decodes with ``cores_per_gpu`` CPU cores at a per-core rate measured by
  ``python -m lars_hvd.bench input``; it runs beside compute, so a micro-batch takes the
  longer of the two.
- **Allreduce** as Horovod does it: the gradients (parameters x 4 bytes, 2 with fp16
  compression) in fusion buffers of ``HOROVOD_FUSION_THRESHOLD`` bytes, one collective per
  buffer, each NCCL's ring or tree (the faster) or Horovod's hierarchical allreduce where
  asked (``lars_hvd.planning.collectives``). Gradients become ready from the last layer to the first
  during the **last** micro-batch's backward (with accumulation, the earlier ones finish
  first) and are sent as they come, one cycle (``HOROVOD_CYCLE_TIME``) late: the exposed
  part is ``max(allreduce + cycle - backward, cycle + latency)``: the first layers' gradients,
  ready last, are never hidden.
- **Batch-norm group** (``--bn-group G``): each of the model's BN layers allreduces its
  [mean, E[x^2]] (2 x channels float32) over G consecutive GPUs in the forward pass, and
  their gradient in the backward: 2 x layers collectives a micro-batch, each waiting for
  the one before it. Horovod starts a collective at its next cycle, after its ranks agree
  on it: each adds a cycle and its ring, ``2 layers x cycle + ring``, whatever the compute
  between two (on this project's CPU, 2 ranks: 1.4 to 2.1 ms each with 0 to 8 ms between
  them, ``python -m lars_hvd.bench bn-group``; docs/performance.md). Not priced: the group's
  non-fused batch-norm kernel (``distributed.GroupBatchNormalization``).
- **Optimizer**: LARS reads and writes 7 parameter-sized float32 arrays (weights, gradient,
  velocity, two norms' passes) at the GPU's memory bandwidth.
- Step = k micro-batches + exposed allreduce + optimizer; epoch = steps per epoch x step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from lars_hvd.errors import UsageError
from lars_hvd.planning import collectives

FUSION_THRESHOLD_BYTES = 128 * 2**20  # Horovod >= 0.21 default (release notes, PR #2468)
CYCLE_SECONDS = 1e-3  # HOROVOD_CYCLE_TIME default, 1 ms since Horovod 0.21 (PR #2468)
BACKWARD_FRACTION = 2 / 3  # backward = 2x forward flops (Goyal et al. 2017, sec. 4)
OPTIMIZER_PASSES = 7  # LARS: read w, g, v, 2 norm passes; write w, v (lars_hvd/optim/lars.py)

PARAMETERS = {  # trainable parameters, counted from models/ (tests/test_bench.py checks two)
    "resnet50": 25_557_032,
    "alexnet_bn": 62_379_720,
    "inception_v3": 23_851_784,  # Keras applications InceptionV3 (validation only)
    "vgg16": 138_357_544,  # Keras applications VGG16 (validation only)
}
BATCH_NORM = {  # (BN layers, their channels summed), counted from models/ (tests/test_cost.py)
    "resnet50": (53, 26_560),
    "alexnet_bn": (5, 1_376),
}


@dataclass(frozen=True)
class Compute:
    """One GPU's training throughput for one model: published (batch, images/s) points. Two
    points give the fixed and the per-example cost; with one, the fixed cost is
    ``assumed_fixed_seconds`` (0 unless stated)."""
    points: tuple[tuple[int, float], ...]
    precision: str
    source: str
    assumed_fixed_seconds: float = 0.0

    @property
    def fixed_seconds(self) -> float:
        if len(self.points) == 1:
            return self.assumed_fixed_seconds
        (b1, r1), (b2, r2) = sorted(self.points)[:2]
        return b1 / r1 - b1 * (b2 / r2 - b1 / r1) / (b2 - b1)

    @property
    def per_example_seconds(self) -> float:
        if len(self.points) == 1:
            (b, r), = self.points
            return (b / r - self.assumed_fixed_seconds) / b
        (b1, r1), (b2, r2) = sorted(self.points)[:2]
        return (b2 / r2 - b1 / r1) / (b2 - b1)

    def seconds(self, batch: float) -> float:
        return self.fixed_seconds + batch * self.per_example_seconds

    def images_per_second(self) -> float:
        """At the largest published batch: what the input must keep up with."""
        batch = max(b for b, _ in self.points)
        return batch / self.seconds(batch)


@dataclass(frozen=True)
class Hardware:
    name: str
    about: str
    gpus_per_node: int
    cores_per_gpu: float
    memory_gbytes_per_second: float  # one GPU's memory bandwidth
    nvlink_gbytes_per_second: float  # allreduce bus bandwidth inside a node
    network_gbytes_per_second: float  # one node's network, all its adapters
    compute: dict[str, Compute] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    intra_latency_seconds: float = 5e-6  # assumed: an NVLink hop with NCCL's protocol
    inter_latency_seconds: float = 10e-6  # assumed: an InfiniBand/RoCE hop, NCCL over verbs
    sharp: str = ""  # the fabric's in-network reduction for NCCL's CollNet, with its source


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

# Per CPU core (all of them busy), images/s of the ImageNet reader's training input (decode,
# crop, flip, uint8 pixels) in the steady state, measured here by `python -m lars_hvd.bench
# input --out docs/results/bench/full` (its input.json, medians of 5 rounds; tests/test_cost.py
# checks that these are its numbers): each recipe from original 500x375 JPEGs and from shards
# pre-sized to a 256 px shorter side (make_tfrecords --shorter-side 256). The reader before
# uint8 pixels gives 336 and 276 from the originals.
DATA_FORMS = ("originals", "pre-sized")
FORM_TEXT = {"originals": "original JPEGs", "pre-sized": "shards pre-sized to 256 px"}
INPUT_PER_CORE = {"inception": {"originals": 548.0, "pre-sized": 754.0},
                  "crop": {"originals": 410.0, "pre-sized": 961.0}}
RECIPE = {"resnet50": "inception", "inception_v3": "inception", "vgg16": "inception",
          "alexnet_bn": "crop"}  # lars_hvd.data.preprocess.recipe at each model's input size


@dataclass(frozen=True)
class Projection:
    hardware: str
    model: str
    gpus: int
    nodes: int
    per_gpu_batch: float  # per micro-batch
    accumulation_steps: int
    compute_ms: float  # forward + backward, all micro-batches of one step
    input_ms: float  # decode for one step, per GPU, beside compute
    allreduce_ms: float  # the whole allreduce, as if alone
    exposed_ms: float  # the part backprop does not hide
    optimizer_ms: float
    step_ms: float
    images_per_second: float
    bound: str  # compute, input, allreduce or batch-norm group
    precision: str = ""  # what the published compute numbers were measured at
    input_per_core: float = 0.0  # images/s a CPU core decodes (0: no input pipeline)
    cores_per_gpu: float = 0.0
    data_form: str = ""  # which of DATA_FORMS that rate is for
    bn_group: int = 1  # GPUs whose batch norm shares statistics (--bn-group)
    bn_group_ms: float = 0.0  # what the group's allreduces add to a step, all micro-batches
    allreduce_algorithm: str = ""  # ring, tree, collnet or hierarchical (collectives)
    allreduce_why: str = ""

    def epoch_seconds(self, steps_per_epoch: int) -> float:
        return steps_per_epoch * self.step_ms / 1e3


def allreduce(hw: Hardware, gpus: int, nbytes: float, *, hierarchical: bool = False,
              nccl_tree: bool = True, fusion_bytes: float = FUSION_THRESHOLD_BYTES,
              buffers: int | None = None, sharp: bool = False) -> collectives.Allreduce:
    """``nbytes`` of gradients over ``gpus`` GPUs, in fusion buffers of ``fusion_bytes`` (or
    in ``buffers`` equal collectives), as ``collectives.allreduce`` runs them; ``sharp``:
    NCCL's CollNet too, on a profile whose fabric has it."""
    if sharp and not hw.sharp:
        with_it = ", ".join(name for name, h in HARDWARE.items() if h.sharp)
        raise UsageError(f"--sharp: {hw.name}'s fabric has no in-network reduction that "
                         f"NCCL's CollNet uses (profiles with one: {with_it}); drop --sharp.")
    fused = max(1, math.ceil(nbytes / fusion_bytes)) if fusion_bytes > 0 else 1
    return collectives.allreduce(hw, gpus, nbytes, buffers or fused,
                                 hierarchical_asked=hierarchical, nccl_tree=nccl_tree,
                                 sharp=sharp)


def bn_group_seconds(hw: Hardware, model: str, group: int) -> float:
    """What batch norm over ``group`` consecutive GPUs adds to one micro-batch: 2 x layers
    collectives one after another, each a Horovod cycle and a ring (module docstring)."""
    if group <= 1:
        return 0.0
    if model not in BATCH_NORM:
        raise UsageError(f"lars_hvd.planning.cost does not know {model}'s batch-norm layers; "
                         f"add them to cost.BATCH_NORM to project --bn-group {group}.")
    layers, channels = BATCH_NORM[model]
    count = 2 * layers  # forward: the moments; backward: their gradient
    rings = allreduce(hw, group, count * 2 * channels * 4 / layers, buffers=count).seconds
    return count * CYCLE_SECONDS + rings


def project(hw: Hardware, model: str, gpus: int, per_gpu_batch: float,
            accumulation_steps: int = 1, *, fp16_allreduce: bool = False,
            hierarchical: bool = False, parameters: int | None = None,
            input_pipeline: bool = True, data_form: str = "originals",
            bn_group: int = 1, nccl_tree: bool = True, sharp: bool = False) -> Projection:
    """One optimizer step of ``model`` on ``gpus`` GPUs of ``hw``, each taking
    ``accumulation_steps`` micro-batches of ``per_gpu_batch`` examples, its input decoded
    from ``data_form`` shards (``DATA_FORMS``) at the rate measured here, its batch norm
    over ``bn_group`` GPUs; ``nccl_tree=False``: an NCCL without its tree (before 2.4);
    ``sharp``: NCCL's CollNet on the fabric's in-network reduction, where faster."""
    if data_form not in DATA_FORMS:
        raise ValueError(f"data_form must be one of {DATA_FORMS} (got {data_form!r}).")
    if model not in hw.compute:
        raise UsageError(f"no published {model} throughput for {hw.name} in lars_hvd.planning.cost "
                         f"(it has: {', '.join(sorted(hw.compute))}); add one with its "
                         f"source to project this run.")
    if gpus < 1 or per_gpu_batch <= 0 or accumulation_steps < 1:
        raise ValueError(f"need gpus >= 1, per-GPU batch > 0, accumulation >= 1; got "
                         f"{gpus}, {per_gpu_batch}, {accumulation_steps}")
    compute = hw.compute[model].seconds(per_gpu_batch)
    per_core = INPUT_PER_CORE[RECIPE[model]][data_form] if input_pipeline else 0.0
    # (no input pipeline: synthetic data, or one that is not the bound)
    decode = per_gpu_batch / (hw.cores_per_gpu * per_core) if input_pipeline else 0.0
    batch_norm = bn_group_seconds(hw, model, bn_group)
    micro = max(compute + batch_norm, decode)
    params = parameters or PARAMETERS[model]
    nbytes = params * (2 if fp16_allreduce else 4)
    gradients = allreduce(hw, gpus, nbytes, hierarchical=hierarchical, nccl_tree=nccl_tree,
                          sharp=sharp)
    if gpus == 1:
        exposed = 0.0
    else:
        backward = BACKWARD_FRACTION * micro  # the last micro-batch's only
        exposed = max(gradients.seconds + CYCLE_SECONDS - backward,
                      CYCLE_SECONDS + gradients.latency)
    optimizer = OPTIMIZER_PASSES * 4 * params / (hw.memory_gbytes_per_second * 1e9)
    step = accumulation_steps * micro + exposed + optimizer
    parts = {"compute": accumulation_steps * compute, "input": accumulation_steps * decode,
             "allreduce": exposed, "batch-norm group": accumulation_steps * batch_norm}
    return Projection(
        hardware=hw.name, model=model, gpus=gpus, nodes=math.ceil(gpus / hw.gpus_per_node),
        per_gpu_batch=per_gpu_batch, accumulation_steps=accumulation_steps,
        compute_ms=1e3 * accumulation_steps * compute, input_ms=1e3 * accumulation_steps * decode,
        allreduce_ms=1e3 * gradients.seconds, exposed_ms=1e3 * exposed,
        optimizer_ms=1e3 * optimizer,
        step_ms=1e3 * step, images_per_second=gpus * per_gpu_batch * accumulation_steps / step,
        bound=max(parts, key=parts.get), precision=hw.compute[model].precision,
        input_per_core=per_core, data_form=data_form if input_pipeline else "",
        cores_per_gpu=hw.cores_per_gpu, bn_group=bn_group,
        allreduce_algorithm=gradients.algorithm, allreduce_why=gradients.why,
        bn_group_ms=1e3 * accumulation_steps * batch_norm)


def calibrated(hw: Hardware, model: str, run: tuple[int, float, float], source: str
               ) -> Hardware:
    """``hw`` with ``model``'s fixed cost a step set so that the projection of one published
    run, ``run`` = (GPUs, per-GPU batch, images/s; synthetic input, as MLPerf's GPU decoding
    is to the CPU), is that run's rate: a calibration row (docs/results/cost-validation.md
    says which, and does not count it as validation). The per-example cost stays that of the
    profile's published point."""
    gpus, per_gpu_batch, images_per_second = run
    compute = hw.compute[model]
    (batch, rate), = compute.points

    def rate_with(fixed: float) -> float:
        with_fixed = replace(compute, assumed_fixed_seconds=fixed)
        trial = replace(hw, compute={**hw.compute, model: with_fixed})
        return project(trial, model, gpus, per_gpu_batch, input_pipeline=False
                       ).images_per_second

    low, high = 0.0, batch / rate  # the rate falls as the fixed cost grows
    if not rate_with(high * 0.999) < images_per_second < rate_with(low):
        raise ValueError(f"no fixed cost a step makes {hw.name} reach {images_per_second:,.0f} "
                         f"images/s on {gpus} GPUs at {per_gpu_batch} a GPU")
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if rate_with(middle) > images_per_second else (low, middle)
    fixed = replace(compute, assumed_fixed_seconds=low, source=f"{compute.source}; {source}")
    return replace(hw, compute={**hw.compute, model: fixed})


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
    "MXNet's (cost.DGX_A100_MXNET, set by MLPerf v1.0's 8 DGX A100), assumed for TensorFlow")})


def hardware(name: str, network_gbits: float | None = None) -> Hardware:
    """A profile by name (``--hardware``), its network optionally replaced (Gb/s a node)."""
    if name not in HARDWARE:
        raise UsageError(f"unknown --hardware {name!r}; choose one of "
                         f"{', '.join(HARDWARE)} (--hardware list describes them).")
    hw = HARDWARE[name]
    return hw if network_gbits is None else replace(hw, network_gbytes_per_second=network_gbits / 8)


def describe_hardware() -> str:
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


def describe(p: Projection, steps_per_epoch: int, total_steps: int) -> str:
    """The lines ``--dry-run --hardware`` adds to the plan."""
    epoch = p.epoch_seconds(steps_per_epoch)
    return "\n".join([
        f"projected on               {p.gpus} GPUs of {p.hardware} ({p.nodes} "
        f"node{'s' if p.nodes > 1 else ''}), {p.model} at the published {p.precision} rate: "
        f"docs/cost.md",
        f"  per micro-batch          {p.compute_ms / p.accumulation_steps:.1f} ms compute "
        f"({p.per_gpu_batch:g} examples a GPU), input {p.input_ms / p.accumulation_steps:.1f}"
        f" ms beside it",
        f"  input                    {p.input_per_core:,.0f} img/s a CPU core x "
        f"{p.cores_per_gpu:g} cores a GPU: the {RECIPE[p.model]} recipe from "
        f"{FORM_TEXT[p.data_form]}, "
        f"measured by `bench input` (docs/imagenet.md)" if p.input_per_core else
        "  input                    not counted",
        *([f"  batch-norm group         {p.bn_group_ms / p.accumulation_steps:.1f} ms a "
           f"micro-batch: {2 * BATCH_NORM[p.model][0]} allreduces over {p.bn_group} GPUs, "
           f"one after another, each a Horovod cycle ({1e3 * CYCLE_SECONDS:g} ms) and a ring"]
          if p.bn_group > 1 else []),
        *([f"  allreduce                {p.allreduce_why}"]
          if p.gpus > 1 else []),
        f"  per optimizer step       {p.step_ms:.1f} ms = {p.accumulation_steps} micro-batch(es)"
        f" + allreduce {p.exposed_ms:.2f} ms exposed of {p.allreduce_ms:.2f} ms + optimizer "
        f"{p.optimizer_ms:.2f} ms",
        f"  throughput               {p.images_per_second:,.0f} images/s",
        f"  epoch                    {duration(epoch)} ({steps_per_epoch} steps)",
        f"  run                      {duration(total_steps * p.step_ms / 1e3)} "
        f"({total_steps} steps; training only: no evaluation, start-up or checkpoints)",
        f"  bound by                 {p.bound}",
    ])


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
