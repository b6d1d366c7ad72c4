"""Configuration: the dataclasses that are the training flags, and every check of them.

The dataclasses below are the single source of the training flags: every field is one
kebab-case flag (``global_batch_size`` -> ``--global-batch-size``), with its default shown in
``--help`` and its bounds declared beside it (``flag(..., above=0)``). A preset (``--preset``,
``lars_hvd.planning.presets``) holds a whole experiment; flags given on the command line
override it. ``lars_hvd.planning.validation`` checks a config (``lars_hvd.planning.cli`` the
command's own flags, ``--dry-run``, ``--hardware``, ...). Turning a valid config into
numbers is ``lars_hvd.planning.plan``'s.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from lars_hvd import data as datasets
from lars_hvd import models
from lars_hvd.errors import UsageError
from lars_hvd.optim.modes import LARS_MODES, TRUST_RATIO_MODES
from lars_hvd.planning.presets import PRESETS

OPTIMIZERS = ("lars", "sgd", "lamb")
DECAYS = ("poly", "cosine", "step", "none")
LR_SCALINGS = ("none", "linear")
# --precision -> the Keras mixed-precision policy it sets.
PRECISION_POLICIES = {"fp32": "float32", "mixed_bfloat16": "mixed_bfloat16",
                      "mixed_float16": "mixed_float16"}


@dataclass(frozen=True)
class Bounds:
    """What a numeric flag accepts: ``above < value``, ``at_least <= value``, ``value <
    below``; None is always accepted for an optional flag. ``increasing``: a list flag's
    values must not decrease."""

    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None
    increasing: bool = False
    hint: str = ""  # appended to the error, e.g. the unit the flag is in

    def error(self, name: str, value) -> str | None:
        """Why ``value`` cannot be ``--name``, or None."""
        if value is None:
            return None
        flag_text = spelled(name)
        if self.increasing:
            ok = list(value) == sorted(value)
            return None if ok else f"{flag_text} must be increasing (got {list(value)})"
        low_ok = ((self.above is None or value > self.above)
                  and (self.at_least is None or value >= self.at_least))
        high_ok = ((self.below is None or value < self.below)
                   and (self.at_most is None or value <= self.at_most))
        if low_ok and high_ok:
            return None
        low = (f"({self.above:g}" if self.above is not None else
               f"[{self.at_least:g}" if self.at_least is not None else None)
        high = (f"{self.below:g})" if self.below is not None else
                f"{self.at_most:g}]" if self.at_most is not None else None)
        if high is not None and low is not None:
            wanted = f"in {low}, {high}"
        elif self.below is not None:
            wanted = f"< {self.below:g}"
        elif self.at_most is not None:
            wanted = f"<= {self.at_most:g}"
        else:
            wanted = f"> {self.above:g}" if self.above is not None else f">= {self.at_least:g}"
        return f"{flag_text} must be {wanted} (got {value}){self.hint}"


POSITIVE = Bounds(above=0)
NON_NEGATIVE = Bounds(at_least=0)
FRACTION = Bounds(at_least=0, below=1)  # [0, 1)


def spelled(name: str) -> str:
    """How the field or argument ``name`` is written on a command line: ``--name-of-it``."""
    return "--" + name.replace("_", "-")


def flag(default, help: str, choices=None, bounds: Bounds | None = None,
         path: str | None = None, optimizers: tuple[str, ...] | None = None):
    """A dataclass field that is also a CLI flag: its default, its ``--help``, and what it
    accepts (``choices``, numeric ``bounds``, or ``path``: the ``folder``, ``file`` or
    ``file prefix`` a path flag names). ``optimizers``: the ``--optimizer`` values that use
    it (none: every one); ``validate`` refuses it changed for another."""
    if optimizers:
        help = f"{help} (--optimizer {' or '.join(optimizers)} only)"
    metadata = {"help": help, "choices": choices, "bounds": bounds, "path": path,
                "optimizers": optimizers}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    dataset: str = flag("fashion-mnist", "input pipeline", tuple(datasets.DATASETS))
    data_dir: str | None = flag(None, "dataset folder (fashion-mnist: the four IDX files; "
                                      "default: Debian's dataset-fashion-mnist folder)",
                                path="folder")
    train_examples: int | None = flag(None, "use only the first N training examples",
                                      bounds=POSITIVE)
    synthetic_examples: int = flag(65_536, "synthetic: training examples per epoch",
                                   bounds=POSITIVE)
    num_classes: int | None = flag(None, "number of classes (default: the dataset's; "
                                         "imagenet: DATA_DIR/dataset.json's, else 1000; "
                                         "synthetic: 1000)", bounds=POSITIVE)
    image_size: int | None = flag(None, "synthetic: square image side (default: the model's)",
                                  bounds=POSITIVE)
    label_offset: int = flag(1, "imagenet: subtracted from image/class/label (1..1000 -> "
                                "0..999)", bounds=NON_NEGATIVE)
    augment: str = flag("auto", "imagenet training augmentation: inception (random-resized "
                                "crop + flip), crop (resize 256, random crop + flip), auto "
                                "(crop for 227 px AlexNet, else inception)",
                        ("auto", "inception", "crop"))
    shuffle_buffer: int = flag(4096, "imagenet: shuffle buffer, in records per worker",
                               bounds=POSITIVE)
    cache: str | None = flag(None, "imagenet: cache each worker's records: 'memory', or a "
                                   "file prefix (each worker writes its own PREFIX.train-* "
                                   "and PREFIX.eval-* files)", path="file prefix")
    bad_records: str = flag("skip", "imagenet: an undecodable image or corrupt record is "
                                    "skipped and counted (skip) or stops the run (error)",
                            ("skip", "error"))
    max_bad_records: int = flag(100, "imagenet, --bad-records skip: stop after more than this "
                                     "many bad records on one worker", bounds=NON_NEGATIVE)


@dataclass
class ModelConfig:
    model: str = flag("small_cnn_bn", "network, from the models/ registry", tuple(models.names()))
    bn_momentum: float = flag(0.9, "batch-norm moving-average momentum (Keras's default 0.99 "
                                   "lags over the few dozen steps of a large-batch run)",
                              bounds=Bounds(above=0, below=1))
    label_smoothing: float = flag(0.0, "label smoothing of the cross-entropy loss", bounds=FRACTION)
    bn_group: int = flag(1, "batch-norm statistics over groups of N consecutive workers "
                            "(N = world size: all; 1: each worker its own micro-batch)",
                         bounds=Bounds(at_least=1))


@dataclass
class OptimizerConfig:
    """One optimizer's settings: those of the others (``optimizers=``) stay at their defaults
    (``validate``), so a config cannot mix two optimizers."""
    optimizer: str = flag("lars", "lars (ours), sgd (Keras SGD + momentum), lamb "
                                  "(lars_hvd.optim.lamb)", OPTIMIZERS)
    momentum: float = flag(0.9, "momentum", bounds=FRACTION, optimizers=("lars", "sgd"))
    nesterov: bool = flag(False, "Nesterov momentum", optimizers=("lars", "sgd"))
    weight_decay: float = flag(5e-4, "weight decay: coupled L2 for lars (its "
                                     "weight_decay_rate), decoupled for sgd and lamb",
                               bounds=NON_NEGATIVE)
    trust_coefficient: float = flag(0.001, "LARS eta (You et al. 2017: 0.001)", bounds=POSITIVE,
                                    optimizers=("lars",))
    lars_epsilon: float = flag(0.0, "LARS epsilon in the trust-ratio denominator",
                               bounds=NON_NEGATIVE, optimizers=("lars",))
    trust_ratio_mode: str = flag("paper", "LARS trust ratio form", TRUST_RATIO_MODES,
                                 optimizers=("lars",))
    lars_mode: str = flag("scale", "LARS local rate: scale (lr * trust, the paper) or clip "
                                   "(min(lr, trust): LARC's clip, the authors' Caffe)",
                          LARS_MODES, optimizers=("lars",))
    exclude_low_rank: bool = flag(True, "no decay and no adaptation for rank <= 1 variables "
                                        "(biases, BN gamma/beta)")
    # Akiba et al. 2017 warm up momentum SGD; LARS's trust ratio and RMSprop would both set
    # the step's size, and LAMB is an Adam.
    rmsprop_warmup_epochs: float = flag(0.0, "start as RMSprop and reach momentum SGD at this "
                                             "epoch (Akiba et al. 2017; 0: off)",
                                        bounds=NON_NEGATIVE, optimizers=("sgd",))
    rmsprop_learning_rate: float = flag(3e-4, "the RMSprop part's learning rate during "
                                              "--rmsprop-warmup-epochs", bounds=POSITIVE,
                                        optimizers=("sgd",))


@dataclass
class ScheduleConfig:
    learning_rate: float = flag(10.0, "peak learning rate; with --lr-scaling linear, per "
                                      "--reference-batch-size examples", bounds=POSITIVE)
    lr_scaling: str = flag("none", "none: --learning-rate is absolute; linear: it is scaled "
                                   "by global batch / reference batch (Goyal et al. 2017)",
                           LR_SCALINGS)
    reference_batch_size: int = flag(256, "the batch the linear-scaling rule refers to",
                                     bounds=POSITIVE)
    warmup_epochs: float = flag(1.0, "linear warmup length, in epochs")
    warmup_start_lr: float = flag(0.0, "learning rate at step 0 of the warmup", bounds=NON_NEGATIVE)
    decay: str = flag("poly", "decay after warmup (poly: You et al. 2017)", DECAYS)
    poly_power: float = flag(2.0, "power of the polynomial decay (the paper: 2)", bounds=POSITIVE)
    end_learning_rate: float = flag(0.0, "learning rate at the last step (poly, cosine)",
                                    bounds=NON_NEGATIVE)
    step_boundaries: tuple[float, ...] = flag((30.0, 60.0, 80.0), "step decay: epochs at "
                                                                  "which the LR is multiplied",
                                              bounds=Bounds(increasing=True))
    step_factor: float = flag(0.1, "step decay: multiplier at each boundary", bounds=POSITIVE)


@dataclass
class JobConfig:
    global_batch_size: int = flag(4096, "examples per optimizer step, over all workers",
                                  bounds=POSITIVE)
    batch_schedule: str | None = flag(None, "EPOCH:BATCH[,EPOCH:BATCH...]: from epoch EPOCH "
                                            "(1-based) on, a global batch of BATCH (Smith et "
                                            "al. 2017); before, --global-batch-size")
    max_per_worker_batch: int | None = flag(None, "largest batch one worker can hold; above "
                                                  "it, gradients are accumulated", bounds=POSITIVE)
    epochs: int = flag(6, "training epochs", bounds=POSITIVE)
    seed: int = flag(0, "seed of weights and data order")
    precision: str = flag("fp32", "compute precision", tuple(PRECISION_POLICIES))
    xla: bool = flag(False, "XLA auto-clustering (slow on CPU: keep it for GPUs)")
    fp16_allreduce: bool = flag(False, "compress gradients to float16 for the allreduce")
    hierarchical_allreduce: bool = flag(False, "Horovod's hierarchical allreduce "
                                               "(HOROVOD_HIERARCHICAL_ALLREDUCE: NCCL inside a "
                                               "node, then across nodes; a NCCL build under "
                                               "MPI only)")
    deterministic: bool = flag(False, "deterministic TF ops (exact reruns, slower)")
    run_dir: str | None = flag(None, "where logs, checkpoints and the plan go (default: "
                                     "runs/<time stamp>)", path="folder")
    resume: bool = flag(False, "continue the run in --run-dir from its last checkpoint")
    elastic: bool = flag(False, "elastic Horovod (horovodrun --min-np/--max-np "
                                "--host-discovery-script, Gloo): workers may leave and join; "
                                "the global batch is held")
    log_every_steps: int = flag(5, "TensorBoard step scalars (loss, LR, trust ratio) every N steps",
                                bounds=POSITIVE)
    progress_every_steps: int = flag(50, "besides a line an epoch, a progress line every N "
                                         "optimizer steps inside it", bounds=POSITIVE)
    progress_every_seconds: float = flag(60.0, "... and at least every S seconds (at a step's "
                                               "end); an evaluation that takes S seconds or "
                                               "more prints its own lines", bounds=POSITIVE)
    keep_checkpoints: int = flag(3, "epoch checkpoints kept (and as many step checkpoints)",
                                 bounds=POSITIVE)
    signal_check_seconds: float = flag(1.0, "how often the workers agree on a caught SIGTERM or "
                                            "SIGUSR1 (one allreduce): about every S seconds "
                                            "of steps, the first step always (0: every "
                                            "step)", bounds=NON_NEGATIVE)
    checkpoint_every_steps: int = flag(0, "also checkpoint every N optimizer steps, mid-epoch "
                                          "(0: at epoch ends only; a signal always does)",
                                       bounds=NON_NEGATIVE)


@dataclass
class EvalConfig:
    eval_batch_size: int | None = flag(None, "per-worker evaluation batch (default: the "
                                             "per-worker training batch, which fits)",
                                       bounds=POSITIVE)
    eval_every_epochs: int = flag(1, "evaluate every N epochs; the last epoch always",
                                  bounds=POSITIVE)
    eval_examples: int | None = flag(None, "evaluate on the first N examples only (a subset, "
                                           "said so in the summary)", bounds=POSITIVE)
    target_accuracy: float | None = flag(None, "stop after the first evaluation whose top-1 "
                                               "accuracy reaches A; the summary gives the epochs "
                                               "and the time to it", bounds=Bounds(
                                                   above=0, at_most=1,
                                                   hint=": a fraction, 0.9 for 90%"))
    bn_recompute_examples: int = flag(0, "before the final evaluation, recompute batch-norm "
                                         "statistics over this many training examples per "
                                         "worker (0: keep the moving averages)",
                                      bounds=NON_NEGATIVE)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    job: JobConfig = field(default_factory=JobConfig)
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


def preset(name: str, optimizer: str | None = None) -> TrainConfig:
    """The preset ``name``; with ``optimizer`` (a ``--optimizer`` given beside it), without
    the preset's settings that only another optimizer uses."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}.")
    fields = flat_fields()
    settings = {key: value for key, value in PRESETS[name].settings.items()
                if optimizer is None or uses(fields[key][1], optimizer)}
    return with_values(TrainConfig(), settings)


def owners(f: dataclasses.Field) -> tuple[str, ...] | None:
    """The ``--optimizer`` values that use field ``f`` (None: every one)."""
    return f.metadata.get("optimizers")


def uses(f: dataclasses.Field, optimizer: str) -> bool:
    """Whether ``--optimizer optimizer`` uses field ``f``."""
    return not owners(f) or optimizer in owners(f)
