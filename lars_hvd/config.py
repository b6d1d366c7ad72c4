"""Configuration: dataclasses -> CLI flags, named presets, and resolve() into a run plan.

The dataclasses below are the single source of the training flags: every field is one
kebab-case flag (``global_batch_size`` -> ``--global-batch-size``), with its default shown in
``--help``. A preset (``--preset``) holds a whole experiment; flags given on the command line
override it. ``resolve()`` computes every derived number once (per-worker batch, gradient
accumulation, steps, warmup, the scaled learning rate), for a given world size, so that the
same command means the same training on 1 worker or on 1024.

Units: a *global* batch is summed over all workers and accumulation steps (one optimizer
step); a *per-worker* batch is what one process feeds through the model at once. A *step* is
one optimizer step (one global batch); Keras's ``optimizer.iterations`` counts micro-batches
when accumulation is on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field

DATASETS = ("fashion-mnist", "synthetic", "imagenet")
OPTIMIZERS = ("lars", "sgd", "lamb")
DECAYS = ("poly", "cosine", "step", "none")
LR_SCALINGS = ("none", "linear")
PRECISIONS = ("fp32", "mixed_bfloat16", "mixed_float16")
MODELS = ("small_cnn_bn", "small_cnn", "alexnet_bn", "alexnet", "resnet50")

# Dataset facts the planner needs without loading any data: examples, classes, image shape
# (None: the model's own input shape).
DATASET_FACTS = {
    "fashion-mnist": {"train": 60_000, "eval": 10_000, "classes": 10, "shape": (28, 28, 1)},
    "imagenet": {"train": 1_281_167, "eval": 50_000, "classes": 1000, "shape": None},
    "synthetic": {"train": None, "eval": 0, "classes": None, "shape": None},
}
MODEL_INPUT_SHAPES = {
    "small_cnn_bn": (28, 28, 1), "small_cnn": (28, 28, 1),
    "alexnet_bn": (227, 227, 3), "alexnet": (227, 227, 3), "resnet50": (224, 224, 3),
}


def flag(default, help: str, choices=None):  # noqa: A002  (argparse's word)
    """A dataclass field that is also a CLI flag."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default),
                     metadata={"help": help, "choices": choices})
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class DataConfig:
    dataset: str = flag("fashion-mnist", "input pipeline", DATASETS)
    data_dir: str | None = flag(None, "dataset folder (fashion-mnist: the four IDX files; "
                                      "default: Debian's dataset-fashion-mnist folder)")
    train_examples: int | None = flag(None, "use only the first N training examples")
    synthetic_examples: int = flag(65_536, "synthetic: training examples per epoch")
    num_classes: int | None = flag(None, "number of classes (default: the dataset's; "
                                         "imagenet: DATA_DIR/dataset.json's, else 1000; "
                                         "synthetic: 1000)")
    image_size: int | None = flag(None, "synthetic: square image side (default: the model's)")
    label_offset: int = flag(1, "imagenet: subtracted from image/class/label (1..1000 -> "
                                "0..999)")
    augment: str = flag("auto", "imagenet training augmentation: inception (random-resized "
                                "crop + flip), crop (resize 256, random crop + flip), auto "
                                "(crop for 227 px AlexNet, else inception)",
                        ("auto", "inception", "crop"))
    shuffle_buffer: int = flag(4096, "imagenet: shuffle buffer, in records per worker")
    cache: str | None = flag(None, "imagenet: cache each worker's records: 'memory', or a "
                                   "file prefix (each worker writes its own PREFIX.train-* "
                                   "and PREFIX.eval-* files)")
    bad_records: str = flag("skip", "imagenet: an undecodable image or corrupt record is "
                                    "skipped and counted (skip) or stops the run (error)",
                            ("skip", "error"))
    max_bad_records: int = flag(100, "imagenet, --bad-records skip: stop after more than this "
                                     "many bad records on one worker")


@dataclass
class ModelConfig:
    model: str = flag("small_cnn_bn", "network, from the models/ registry", MODELS)
    bn_momentum: float = flag(0.9, "batch-norm moving-average momentum (Keras's default 0.99 "
                                   "lags over the few dozen steps of a large-batch run)")
    label_smoothing: float = flag(0.0, "label smoothing of the cross-entropy loss")


@dataclass
class OptimizerConfig:
    optimizer: str = flag("lars", "lars (ours), sgd (Keras SGD + momentum), lamb "
                                  "(tensorflow-addons)", OPTIMIZERS)
    momentum: float = flag(0.9, "momentum (lars, sgd)")
    nesterov: bool = flag(False, "Nesterov momentum (lars, sgd)")
    weight_decay: float = flag(5e-4, "weight decay: coupled L2 for lars (its "
                                     "weight_decay_rate), decoupled for sgd and lamb")
    trust_coefficient: float = flag(0.001, "LARS eta (You et al. 2017: 0.001)")
    lars_epsilon: float = flag(0.0, "LARS epsilon in the trust-ratio denominator")
    trust_ratio_mode: str = flag("paper", "LARS trust ratio form", ("paper", "decayed_grad"))
    exclude_low_rank: bool = flag(True, "no decay and no adaptation for rank <= 1 variables "
                                        "(biases, BN gamma/beta)")


@dataclass
class ScheduleConfig:
    learning_rate: float = flag(10.0, "peak learning rate; with --lr-scaling linear, per "
                                      "--reference-batch-size examples")
    lr_scaling: str = flag("none", "none: --learning-rate is absolute; linear: it is scaled "
                                   "by global batch / reference batch (Goyal et al. 2017)",
                           LR_SCALINGS)
    reference_batch_size: int = flag(256, "the batch the linear-scaling rule refers to")
    warmup_epochs: float = flag(1.0, "linear warmup length, in epochs")
    warmup_start_lr: float = flag(0.0, "learning rate at step 0 of the warmup")
    decay: str = flag("poly", "decay after warmup (poly: You et al. 2017)", DECAYS)
    poly_power: float = flag(2.0, "power of the polynomial decay (the paper: 2)")
    end_learning_rate: float = flag(0.0, "learning rate at the last step (poly, cosine)")
    step_boundaries: tuple[float, ...] = flag((30.0, 60.0, 80.0), "step decay: epochs at "
                                                                  "which the LR is multiplied")
    step_factor: float = flag(0.1, "step decay: multiplier at each boundary")


@dataclass
class RunConfig:
    global_batch_size: int = flag(4096, "examples per optimizer step, over all workers")
    max_per_worker_batch: int | None = flag(None, "largest batch one worker can hold; above "
                                                  "it, gradients are accumulated")
    epochs: int = flag(6, "training epochs")
    seed: int = flag(0, "seed of weights and data order")
    precision: str = flag("fp32", "compute precision", PRECISIONS)
    xla: bool = flag(False, "XLA auto-clustering (slow on CPU: keep it for GPUs)")
    fp16_allreduce: bool = flag(False, "compress gradients to float16 for the allreduce")
    deterministic: bool = flag(False, "deterministic TF ops (exact reruns, slower)")
    run_dir: str | None = flag(None, "where logs, checkpoints and the plan go (default: "
                                     "runs/<time stamp>)")
    resume: bool = flag(False, "continue the run in --run-dir from its last checkpoint")
    elastic: bool = flag(False, "elastic Horovod (horovodrun --min-np/--max-np "
                                "--host-discovery-script, Gloo): workers may leave and join; "
                                "the global batch is held")
    log_every_steps: int = flag(5, "TensorBoard scalars (LR, trust ratios) every N steps")
    keep_checkpoints: int = flag(3, "checkpoints kept (one per epoch)")
    eval_batch_size: int = flag(1000, "per-worker batch for evaluation")
    bn_recompute_examples: int = flag(0, "before the final evaluation, recompute batch-norm "
                                         "statistics over this many training examples per "
                                         "worker (0: keep the moving averages)")


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        return cls(**{
            f.name: _section_types()[f.name](**{
                k: tuple(v) if isinstance(v, list) else v for k, v in values[f.name].items()
            })
            for f in dataclasses.fields(cls)
        })


def _section_types() -> dict[str, type]:
    return {f.name: typing.get_type_hints(TrainConfig)[f.name] for f in dataclasses.fields(
        TrainConfig)}


def flat_fields() -> dict[str, tuple[str, dataclasses.Field, typing.Any]]:
    """Every leaf field: name -> (section, field, type). Leaf names are unique."""
    out = {}
    for section, section_type in _section_types().items():
        hints = typing.get_type_hints(section_type)
        for f in dataclasses.fields(section_type):
            if f.name in out:
                raise AssertionError(f"flag --{f.name} is declared twice")
            out[f.name] = (section, f, hints[f.name])
    return out


def with_values(config: TrainConfig, values: dict) -> TrainConfig:
    """A copy of ``config`` with flat ``{field_name: value}`` overrides."""
    fields = flat_fields()
    sections = {name: getattr(config, name) for name in _section_types()}
    for name, value in values.items():
        if name not in fields:
            raise ValueError(f"Unknown setting {name!r}; known: {sorted(fields)}.")
        section = fields[name][0]
        sections[section] = dataclasses.replace(sections[section], **{name: value})
    return TrainConfig(**sections)


# -- presets ------------------------------------------------------------------------------

PRESETS: dict[str, dict] = {
    # The default job (make demo). A 106K-parameter BN CNN at a global batch of 4096 (15
    # steps an epoch), LARS with the paper's eta and poly(2) decay; peak LR 10 was the best of
    # 1/3/10 in the calibration recorded in shared/REFERENCE.md section 8. 6 epochs fit in 5
    # minutes on 2 CPU cores.
    "fashion-mnist": {},
    # You, Gitman, Ginsburg 2017, the authors' Caffe solver for AlexNet-BN at 8K: 100 epochs,
    # poly power 2, momentum 0.9, weight decay 5e-4, eta 0.001, LR 10 at batch 8K (2 at 1K),
    # warmup from LR 1 (their ramp is quadratic over about 3.8 epochs; ours is linear).
    "alexnet-bn-imagenet-8k": {
        "dataset": "imagenet", "model": "alexnet_bn", "global_batch_size": 8192,
        "max_per_worker_batch": 512, "epochs": 100, "learning_rate": 10.0,
        "warmup_epochs": 3.8, "warmup_start_lr": 1.0, "decay": "poly", "poly_power": 2.0,
        "momentum": 0.9, "weight_decay": 5e-4, "trust_coefficient": 0.001,
    },
    # You, Gitman, Ginsburg 2017: ResNet-50 at 32K, 90 epochs, poly power 2, momentum 0.9,
    # eta 0.001, weight decay 1e-4 (with augmentation). The paper's peak LR is not restated
    # here; 31.2 with 25 warmup epochs is the MLPerf rule for batch >= 32K (REFERENCE.md s2).
    "resnet50-imagenet-32k": {
        "dataset": "imagenet", "model": "resnet50", "global_batch_size": 32768,
        "max_per_worker_batch": 256, "epochs": 90, "learning_rate": 31.2,
        "warmup_epochs": 25.0, "decay": "poly", "poly_power": 2.0, "momentum": 0.9,
        "weight_decay": 1e-4, "trust_coefficient": 0.001,
    },
    # LARS as in the MLPerf ResNet-50 v1.5 submissions (NVIDIA's 8x H100 run): batch 3,200,
    # LR 11, 2 warmup epochs, poly(2) to 1e-4, 37 epochs, weight decay 5e-5, label smoothing
    # 0.1, the decayed-gradient trust ratio.
    "resnet50-imagenet-mlperf": {
        "dataset": "imagenet", "model": "resnet50", "global_batch_size": 3200,
        "max_per_worker_batch": 400, "epochs": 37, "learning_rate": 11.0,
        "warmup_epochs": 2.0, "decay": "poly", "poly_power": 2.0, "end_learning_rate": 1e-4,
        "momentum": 0.9, "weight_decay": 5e-5, "label_smoothing": 0.1,
        "trust_ratio_mode": "decayed_grad", "trust_coefficient": 0.001,
    },
}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
    return with_values(TrainConfig(), PRESETS[name])


# -- command line -------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """The CLI: one flag per config field; defaults (before any preset) shown in --help."""
    parser = argparse.ArgumentParser(
        prog="python -m lars_hvd.train",
        description="Train with LARS under Horovod at a fixed global batch. Run as is for one "
                    "process, or as `horovodrun -np N python -m lars_hvd.train ...`.",
    )
    parser.add_argument("--preset", default="fashion-mnist", choices=sorted(PRESETS),
                        help="a whole experiment; flags given here override it "
                             "(default: fashion-mnist)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved plan and exit (no data, no Horovod job)")
    parser.add_argument("--world-size", type=int, default=None,
                        help="with --dry-run: plan for this many workers (default: 1)")
    parser.add_argument("--plot-lr", metavar="FILE.png", default=None,
                        help="draw the resolved learning-rate schedule to FILE.png and exit")
    groups = {}
    for name, (section, f, hint) in flat_fields().items():
        group = groups.setdefault(section, parser.add_argument_group(section))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        # Only flags actually given end up in the namespace, so they can override a preset.
        kwargs = {"dest": name, "default": argparse.SUPPRESS,
                  "help": f"{f.metadata['help']} (default: {shown})"}
        if f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        base = _base_type(hint)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base is tuple:
            kwargs.update(type=float, nargs="+")
        else:
            kwargs["type"] = base
        group.add_argument("--" + name.replace("_", "-"), **kwargs)
    return parser


def _base_type(hint):
    if typing.get_origin(hint) is tuple:
        return tuple
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """Parses the command line: the preset first, then the flags that were given."""
    args = build_parser().parse_args(argv)
    fields = flat_fields()
    overrides = {k: tuple(v) if isinstance(v, list) else v
                 for k, v in vars(args).items() if k in fields}
    config = with_values(preset(args.preset), overrides)
    validate(config)
    return config, args


# -- validation and the plan ----------------------------------------------------------------

def validate(config: TrainConfig) -> None:
    """Raises ValueError naming the value and the fix for a setting that cannot work."""
    r, s, o, m, d = config.run, config.schedule, config.optimizer, config.model, config.data
    checks = [
        (r.global_batch_size > 0, f"--global-batch-size must be > 0 (got {r.global_batch_size})"),
        (r.max_per_worker_batch is None or r.max_per_worker_batch > 0,
         f"--max-per-worker-batch must be > 0 (got {r.max_per_worker_batch})"),
        (r.epochs > 0, f"--epochs must be > 0 (got {r.epochs})"),
        (s.learning_rate > 0, f"--learning-rate must be > 0 (got {s.learning_rate})"),
        (s.reference_batch_size > 0,
         f"--reference-batch-size must be > 0 (got {s.reference_batch_size})"),
        (0 <= s.warmup_epochs < r.epochs,
         f"--warmup-epochs must be in [0, --epochs={r.epochs}) (got {s.warmup_epochs})"),
        (s.warmup_start_lr >= 0, f"--warmup-start-lr must be >= 0 (got {s.warmup_start_lr})"),
        (s.end_learning_rate >= 0,
         f"--end-learning-rate must be >= 0 (got {s.end_learning_rate})"),
        (s.poly_power > 0, f"--poly-power must be > 0 (got {s.poly_power})"),
        (list(s.step_boundaries) == sorted(s.step_boundaries),
         f"--step-boundaries must be increasing (got {list(s.step_boundaries)})"),
        (s.step_factor > 0, f"--step-factor must be > 0 (got {s.step_factor})"),
        (0 <= o.momentum < 1, f"--momentum must be in [0, 1) (got {o.momentum})"),
        (o.weight_decay >= 0, f"--weight-decay must be >= 0 (got {o.weight_decay})"),
        (o.trust_coefficient > 0,
         f"--trust-coefficient must be > 0 (got {o.trust_coefficient})"),
        (o.lars_epsilon >= 0, f"--lars-epsilon must be >= 0 (got {o.lars_epsilon})"),
        (0 < m.bn_momentum < 1, f"--bn-momentum must be in (0, 1) (got {m.bn_momentum})"),
        (0 <= m.label_smoothing < 1,
         f"--label-smoothing must be in [0, 1) (got {m.label_smoothing})"),
        (d.train_examples is None or d.train_examples > 0,
         f"--train-examples must be > 0 (got {d.train_examples})"),
        (d.num_classes is None or d.num_classes > 0,
         f"--num-classes must be > 0 (got {d.num_classes})"),
        (d.label_offset >= 0, f"--label-offset must be >= 0 (got {d.label_offset})"),
        (d.shuffle_buffer > 0, f"--shuffle-buffer must be > 0 (got {d.shuffle_buffer})"),
        (d.max_bad_records >= 0,
         f"--max-bad-records must be >= 0 (got {d.max_bad_records})"),
        (d.synthetic_examples > 0,
         f"--synthetic-examples must be > 0 (got {d.synthetic_examples})"),
        (r.log_every_steps > 0, f"--log-every-steps must be > 0 (got {r.log_every_steps})"),
        (r.keep_checkpoints > 0, f"--keep-checkpoints must be > 0 (got {r.keep_checkpoints})"),
        (r.eval_batch_size > 0, f"--eval-batch-size must be > 0 (got {r.eval_batch_size})"),
        (r.bn_recompute_examples >= 0,
         f"--bn-recompute-examples must be >= 0 (got {r.bn_recompute_examples})"),
        (not (r.resume and r.run_dir is None),
         "--resume needs --run-dir: the run to continue"),
        (not (r.elastic and r.run_dir is None),
         "--elastic needs --run-dir: a folder every worker (also one that joins later) "
         "agrees on"),
    ]
    errors = [message for ok, message in checks if not ok]
    if errors:
        raise ValueError("Invalid configuration: " + "; ".join(errors) + ".")


@dataclass(frozen=True)
class Plan:
    """Every derived number of a run, computed once by resolve()."""

    world_size: int
    global_batch_size: int  # examples per optimizer step, all workers
    per_worker_batch: int  # examples one worker puts through the model at once
    accumulation_steps: int  # micro-batches per worker per optimizer step
    train_examples: int  # examples in the training set (after --train-examples)
    steps_per_epoch: int  # optimizer steps per epoch (the remainder is dropped)
    micro_steps_per_epoch: int  # = steps_per_epoch * accumulation_steps (Keras's steps)
    epochs: int
    total_steps: int  # optimizer steps
    warmup_steps: int  # optimizer steps
    peak_learning_rate: float  # after linear scaling, if any
    learning_rate_rule: str  # how peak_learning_rate was obtained
    input_shape: tuple[int, ...]
    num_classes: int
    eval_examples_per_worker: int  # test examples each worker evaluates

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        dropped = self.train_examples - self.steps_per_epoch * self.global_batch_size
        lines = [
            f"world size               {self.world_size} workers",
            f"global batch             {self.global_batch_size} examples per optimizer step"
            f" = {self.world_size} workers x {self.accumulation_steps} accumulation step(s) x "
            f"{self.per_worker_batch} per-worker batch",
            f"epoch                    {self.steps_per_epoch} optimizer steps "
            f"({self.micro_steps_per_epoch} micro-batches per worker) over "
            f"{self.train_examples} examples, {dropped} dropped per epoch",
            f"training                 {self.epochs} epochs = {self.total_steps} optimizer steps",
            f"learning rate            peak {self.peak_learning_rate:g} ({self.learning_rate_rule})"
            f", warmup {self.warmup_steps} steps",
            f"model input              {self.input_shape} -> {self.num_classes} classes",
            f"evaluation               {self.eval_examples_per_worker} examples per worker",
        ]
        return "\n".join(lines)


def split_global_batch(global_batch: int, world_size: int, max_per_worker: int | None
                       ) -> tuple[int, int]:
    """(per-worker batch, accumulation steps) with world * accumulation * per_worker = global.

    The accumulation is the smallest that brings the per-worker batch under
    ``max_per_worker``. Raises ValueError naming the nearest valid global batches.
    """
    if world_size < 1:
        raise ValueError(f"world size must be >= 1 (got {world_size}).")
    if global_batch % world_size:
        below = global_batch // world_size * world_size
        above = below + world_size
        nearest = [b for b in (below, above) if b > 0]
        raise ValueError(
            f"--global-batch-size {global_batch} cannot be split over {world_size} workers; "
            f"the nearest valid sizes are {' and '.join(map(str, nearest))} (multiples of "
            f"{world_size})."
        )
    per_worker = global_batch // world_size
    if max_per_worker is None or per_worker <= max_per_worker:
        return per_worker, 1
    for accumulation in range(2, per_worker + 1):
        if per_worker % accumulation == 0 and per_worker // accumulation <= max_per_worker:
            return per_worker // accumulation, accumulation
    raise AssertionError("unreachable: accumulation = per_worker always fits")


def dataset_shape(config: TrainConfig) -> tuple[tuple[int, ...], int, int, int]:
    """(input shape, classes, training examples, evaluation examples) without loading data."""
    d = config.data
    facts = DATASET_FACTS[d.dataset]
    model_shape = MODEL_INPUT_SHAPES[config.model.model]
    shape = facts["shape"] or model_shape
    if d.dataset == "synthetic" and d.image_size:
        shape = (d.image_size, d.image_size, model_shape[-1])
    classes = facts["classes"] or d.num_classes or 1000
    train = facts["train"] if facts["train"] is not None else d.synthetic_examples
    eval_examples = facts["eval"]
    if d.dataset == "imagenet":
        # A converted set that is not ImageNet itself says what it holds (make_tfrecords).
        from lars_hvd.data.imagenet import read_manifest

        manifest = read_manifest(d.data_dir) or {}
        classes = manifest.get("classes", classes)
        train = manifest.get("train", train)
        eval_examples = manifest.get("validation", eval_examples)
    if d.num_classes:
        classes = d.num_classes
    if d.train_examples is not None:
        train = min(train, d.train_examples)
    return tuple(shape), classes, train, eval_examples


def resolve(config: TrainConfig, world_size: int) -> Plan:
    """Computes the run plan of ``config`` on ``world_size`` workers."""
    validate(config)
    r, s = config.run, config.schedule
    per_worker, accumulation = split_global_batch(
        r.global_batch_size, world_size, r.max_per_worker_batch)
    input_shape, classes, train_examples, eval_examples = dataset_shape(config)
    steps_per_epoch = train_examples // r.global_batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"--global-batch-size {r.global_batch_size} is larger than the {train_examples} "
            f"training examples: not one optimizer step per epoch. Lower the global batch."
        )
    if s.lr_scaling == "linear":
        peak = s.learning_rate * r.global_batch_size / s.reference_batch_size
        rule = (f"linear scaling: {s.learning_rate:g} per {s.reference_batch_size} examples x "
                f"{r.global_batch_size}/{s.reference_batch_size}")
    else:
        peak = s.learning_rate
        rule = "absolute"
    return Plan(
        world_size=world_size,
        global_batch_size=r.global_batch_size,
        per_worker_batch=per_worker,
        accumulation_steps=accumulation,
        train_examples=train_examples,
        steps_per_epoch=steps_per_epoch,
        micro_steps_per_epoch=steps_per_epoch * accumulation,
        epochs=r.epochs,
        total_steps=steps_per_epoch * r.epochs,
        warmup_steps=round(s.warmup_epochs * steps_per_epoch),
        peak_learning_rate=peak,
        learning_rate_rule=rule,
        input_shape=input_shape,
        num_classes=classes,
        eval_examples_per_worker=eval_examples // world_size,
    )


def plan_json(config: TrainConfig, plan: Plan) -> str:
    return json.dumps({"config": config.to_dict(), "plan": plan.to_dict()}, indent=2)
