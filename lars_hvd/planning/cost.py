"""What a run will cost on N GPUs: step, epoch and run time projected from published hardware
numbers, with the resource that bounds the step. No TensorFlow.

The model (docs/cost.md; the hardware's numbers are ``profiles``'; every number there and
below names its source, or says it is assumed):

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
        from lars_hvd.planning.profiles import HARDWARE  # (it builds on this module)

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


def _check(hw: Hardware, model: str, gpus: int, per_gpu_batch: float,
           accumulation_steps: int, data_form: str) -> None:
    """``project``'s arguments: a model the profile has a published rate for (else a user
    error naming the profile), and sizes that make a step."""
    if data_form not in DATA_FORMS:
        raise ValueError(f"data_form must be one of {DATA_FORMS} (got {data_form!r}).")
    if model not in hw.compute:
        raise UsageError(f"no published {model} throughput for {hw.name} in "
                         f"lars_hvd.planning.profiles (it has: {', '.join(sorted(hw.compute))});"
                         f" add one with its source to project this run.")
    if gpus < 1 or per_gpu_batch <= 0 or accumulation_steps < 1:
        raise ValueError(f"need gpus >= 1, per-GPU batch > 0, accumulation >= 1; got "
                         f"{gpus}, {per_gpu_batch}, {accumulation_steps}")


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
    _check(hw, model, gpus, per_gpu_batch, accumulation_steps, data_form)
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
