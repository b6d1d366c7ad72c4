"""Configuration: dataclasses -> CLI flags, named presets, and resolve() into a run plan.

The dataclasses below are the single source of the training flags: every field is one
kebab-case flag (``global_batch_size`` -> ``--global-batch-size``), with its default shown in
``--help``. A preset (``--preset``, ``lars_hvd.presets``) holds a whole experiment; flags
given on the command line override it. ``validate()`` refuses, naming the value and the fix,
any setting that cannot work; ``lars_hvd.plan.resolve()`` turns a valid config into numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from lars_hvd import data as datasets
from lars_hvd import models
from lars_hvd.errors import UsageError
from lars_hvd.presets import PRESETS

OPTIMIZERS = ("lars", "sgd", "lamb")
DECAYS = ("poly", "cosine", "step", "none")
LR_SCALINGS = ("none", "linear")
PRECISIONS = ("fp32", "mixed_bfloat16", "mixed_float16")


def flag(default, help: str, choices=None):
    """A dataclass field that is also a CLI flag."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default),
                     metadata={"help": help, "choices": choices})
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class DataConfig:
    dataset: str = flag("fashion-mnist", "input pipeline", tuple(datasets.DATASETS))
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
    model: str = flag("small_cnn_bn", "network, from the models/ registry", tuple(models.names()))
    bn_momentum: float = flag(0.9, "batch-norm moving-average momentum (Keras's default 0.99 "
                                   "lags over the few dozen steps of a large-batch run)")
    label_smoothing: float = flag(0.0, "label smoothing of the cross-entropy loss")


@dataclass
class OptimizerConfig:
    optimizer: str = flag("lars", "lars (ours), sgd (Keras SGD + momentum), lamb "
                                  "(lars_hvd.lamb)", OPTIMIZERS)
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
    progress_every_steps: int = flag(50, "output that is not a terminal (a batch job's log): "
                                         "a progress line every N optimizer steps")
    progress_every_seconds: float = flag(60.0, "... and at least every S seconds (at a step's "
                                               "end; evaluation reports on its own)")
    keep_checkpoints: int = flag(3, "epoch checkpoints kept (and as many step checkpoints)")
    checkpoint_every_steps: int = flag(0, "also checkpoint every N optimizer steps, mid-epoch "
                                          "(0: at epoch ends only; a signal always does)")


@dataclass
class EvalConfig:
    eval_batch_size: int | None = flag(None, "per-worker evaluation batch (default: the "
                                             "per-worker training batch, which fits)")
    eval_every_epochs: int = flag(1, "evaluate every N epochs; the last epoch always")
    eval_examples: int | None = flag(None, "evaluate on the first N examples only (a subset, "
                                           "said so in the summary)")
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
    evaluation: EvalConfig = field(default_factory=EvalConfig)

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


def flat_values(config: TrainConfig) -> dict:
    """``{field_name: value}`` of every setting."""
    return {name: getattr(getattr(config, section), name)
            for name, (section, _, _) in flat_fields().items()}


def with_values(config: TrainConfig, values: dict) -> TrainConfig:
    """A copy of ``config`` with flat ``{field_name: value}`` overrides."""
    fields = flat_fields()
    sections = {name: getattr(config, name) for name in _section_types()}
    for name, value in values.items():
        if name not in fields:
            raise UsageError(f"unknown setting {name!r}; known: {', '.join(sorted(fields))}.")
        section = fields[name][0]
        sections[section] = dataclasses.replace(sections[section], **{name: value})
    return TrainConfig(**sections)


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}.")
    return with_values(TrainConfig(), PRESETS[name].settings)


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
    parser.add_argument("--hardware", metavar="PROFILE", default=None,
                        help="with --dry-run: project step, epoch and run time on this "
                             "hardware (`--hardware list` shows the profiles; docs/cost.md)")
    parser.add_argument("--network-gbits", type=float, default=None,
                        help="with --hardware: a node's network in Gb/s, all its adapters "
                             "(default: the profile's)")
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
    if args.plot_lr:
        errors = path_errors("plot_lr", args.plot_lr, "file")
        if errors:
            raise UsageError(errors[0] + ".")
    return config, args


# -- validation ----------------------------------------------------------------------------

# What each path flag names: an existing file where a folder is wanted (or the reverse) is
# refused before anything runs. A missing path is for its user to judge (a run directory is
# made; a missing data directory is named by the data check).
PATH_FLAGS = {"data_dir": "folder", "run_dir": "folder", "cache": "file prefix"}


def _not_finite(config: TrainConfig) -> list[str]:
    errors = []
    for name, (section, _, _) in flat_fields().items():
        value = getattr(getattr(config, section), name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            errors.append(f"--{name.replace('_', '-')} must be a finite number (got "
                          f"{' '.join(map(str, values))})")
    return errors


def path_errors(flag_name: str, path: str | None, kind: str) -> list[str]:
    """Why ``path`` cannot serve as ``--flag-name`` (a ``folder``, ``file`` or ``file
    prefix``), or nothing."""
    if path is None or (kind == "file prefix" and path == "memory"):
        return []
    path, flag_text = Path(path), f"--{flag_name.replace('_', '-')} {path}"
    if kind == "folder" and path.exists() and not path.is_dir():
        return [f"{flag_text} is a file, not a folder; name a folder (or a new path)"]
    if kind in ("file", "file prefix") and path.is_dir():
        return [f"{flag_text} is a folder; name a file{' prefix' if 'prefix' in kind else ''} "
                f"inside it instead"]
    if kind == "file" and path.exists() and not path.is_file():
        return [f"{flag_text} is not a regular file (a device or a pipe); name a file"]
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [f"{flag_text}: {parent} is a file, so nothing can be made below it; choose "
                f"another path"]
    return []


def validate(config: TrainConfig) -> None:
    """Raises UsageError naming the value and the fix for a setting that cannot work."""
    errors = _not_finite(config)
    if errors:
        raise UsageError("invalid configuration: " + "; ".join(errors) + ".")
    r, s, o, m, d = config.run, config.schedule, config.optimizer, config.model, config.data
    e = config.evaluation
    for name, kind in PATH_FLAGS.items():
        section = flat_fields()[name][0]
        errors += path_errors(name, getattr(getattr(config, section), name), kind)
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
        (r.checkpoint_every_steps >= 0,
         f"--checkpoint-every-steps must be >= 0 (got {r.checkpoint_every_steps})"),
        (r.progress_every_steps > 0,
         f"--progress-every-steps must be > 0 (got {r.progress_every_steps})"),
        (r.progress_every_seconds > 0,
         f"--progress-every-seconds must be > 0 (got {r.progress_every_seconds})"),
        (e.eval_batch_size is None or e.eval_batch_size > 0,
         f"--eval-batch-size must be > 0 (got {e.eval_batch_size})"),
        (e.eval_every_epochs > 0,
         f"--eval-every-epochs must be > 0 (got {e.eval_every_epochs})"),
        (e.eval_examples is None or e.eval_examples > 0,
         f"--eval-examples must be > 0 (got {e.eval_examples})"),
        (e.bn_recompute_examples >= 0,
         f"--bn-recompute-examples must be >= 0 (got {e.bn_recompute_examples})"),
        (not (r.resume and r.run_dir is None),
         "--resume needs --run-dir: the run to continue"),
        (not (r.elastic and r.run_dir is None),
         "--elastic needs --run-dir: a folder every worker (also one that joins later) "
         "agrees on"),
    ]
    errors += [message for ok, message in checks if not ok]
    if errors:
        raise UsageError("invalid configuration: " + "; ".join(errors) + ".")
