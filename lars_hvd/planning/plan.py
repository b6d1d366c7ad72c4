"""The run plan: every derived number of a training run, computed once by ``resolve()``.

Units: a *global* batch is summed over all workers and accumulation steps (one optimizer
step); a *per-worker* batch is what one process feeds through the model at once. A *step* is
one optimizer step (one global batch); Keras's ``optimizer.iterations`` counts micro-batches
when accumulation is on. The same command means the same training on 1 worker or on 1024:
only the split of the global batch changes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from lars_hvd import data as datasets
from lars_hvd import models
from lars_hvd.errors import UsageError
from lars_hvd.planning import phases as batch_phases
from lars_hvd.planning.config import TrainConfig
from lars_hvd.planning.phases import Phase
from lars_hvd.planning.validation import validate


def linear_scaled_learning_rate(base_learning_rate: float, global_batch_size: int,
                                reference_batch_size: int = 256) -> float:
    """The linear-scaling rule of Goyal et al. 2017: ``base_lr * global_batch / reference``
    (they use 0.1 per 256 examples for SGD on ImageNet)."""
    if global_batch_size <= 0 or reference_batch_size <= 0:
        raise ValueError(
            f"Batch sizes must be positive. Received: global_batch_size={global_batch_size}, "
            f"reference_batch_size={reference_batch_size}."
        )
    return base_learning_rate * global_batch_size / reference_batch_size


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
    eval_set_examples: int  # examples in the evaluation set
    eval_examples: int  # examples evaluated, over all workers (the set, or --eval-examples)
    eval_examples_per_worker: int  # about eval_examples / world_size
    eval_batch_size: int  # per worker
    eval_every_epochs: int
    # --batch-schedule: every phase, the first at the fields above (empty: one batch; the
    # steps and total_steps above then count every phase).
    phases: tuple[Phase, ...] = ()
    phase: int = 0  # which of ``phases`` this plan trains (``for_epoch``)
    bn_group: int = 1  # workers whose micro-batches share batch-norm statistics

    def for_epoch(self, epoch: int) -> Plan:
        """The plan of the phase that trains (0-based) ``epoch``: its global batch, split,
        steps per epoch and peak LR; the plan itself without a batch schedule. Steps stay
        the run's: counted from its first step over every phase."""
        if not self.phases:
            return self
        return self.for_phase(next((i for i, p in enumerate(self.phases)
                                    if epoch < p.last_epoch), len(self.phases) - 1))

    def for_phase(self, index: int) -> Plan:
        """The plan of batch-schedule phase ``index`` (the plan itself without a schedule)."""
        if not self.phases:
            return self
        p = self.phases[index]
        return dataclasses.replace(
            self, global_batch_size=p.global_batch_size, per_worker_batch=p.per_worker_batch,
            accumulation_steps=p.accumulation_steps, steps_per_epoch=p.steps_per_epoch,
            micro_steps_per_epoch=p.steps_per_epoch * p.accumulation_steps,
            peak_learning_rate=p.peak_learning_rate, phase=index)

    def step_at_epoch(self, epoch: int) -> int:
        """Optimizer steps taken before (0-based) ``epoch``, over every phase."""
        if not self.phases:
            return int(epoch) * self.steps_per_epoch
        return sum(p.steps_per_epoch * max(0, min(int(epoch), p.last_epoch) - p.first_epoch + 1)
                   for p in self.phases)

    def epoch_of_step(self, step: int) -> int:
        """Epochs completed after ``step`` optimizer steps."""
        if not self.phases:
            return int(step) // self.steps_per_epoch
        done = 0  # (per phase, not per epoch: StopOnSignal asks at every step)
        for p in self.phases:
            if step < done + p.steps:
                return p.first_epoch - 1 + (int(step) - done) // p.steps_per_epoch
            done += p.steps
        return self.epochs

    def ends_epoch(self, step: int) -> bool:
        """Whether ``step`` optimizer steps end an epoch."""
        return self.step_at_epoch(self.epoch_of_step(step)) == int(step)

    def optimizer_step(self, iterations) -> int:
        """The optimizer steps taken when Keras's ``optimizer.iterations`` (which counts
        micro-batches) is ``iterations``."""
        return int(iterations) // self.accumulation_steps

    def iterations_at(self, step: int) -> int:
        """Keras's ``optimizer.iterations`` at the start of optimizer step ``step``."""
        return int(step) * self.accumulation_steps

    def evaluates_after(self, epoch: int) -> bool:
        """Whether the run evaluates after (1-based) ``epoch``: every ``eval_every_epochs``
        epochs, and after the last one always."""
        return epoch % self.eval_every_epochs == 0 or epoch == self.epochs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        dropped = self.train_examples - self.steps_per_epoch * self.global_batch_size
        lines = [
            f"world size               {self.world_size} workers",
            f"global batch             {self.batch_text()}",
            f"epoch                    {self.steps_per_epoch} optimizer steps "
            f"({self.micro_steps_per_epoch} micro-batches per worker) over "
            f"{self.train_examples} examples, {dropped} dropped per epoch",
            f"training                 {self.epochs} epochs = {self.total_steps} optimizer steps"
            + (f" in {len(self.phases)} phases" if self.phases else ""),
            f"learning rate            peak {self.peak_learning_rate:g} ({self.learning_rate_rule})"
            f", warmup {self.warmup_steps} steps",
            f"model input              {self.input_shape} -> {self.num_classes} classes",
            f"evaluation               {self.eval_text()}",
        ]
        if self.phases:
            lines.insert(3, batch_phases.text(self.phases))
        if self.bn_group > 1:
            groups = self.world_size // self.bn_group
            lines.insert(2, f"batch norm               statistics over {self.bn_group} workers"
                            f" x {self.per_worker_batch} = {self.bn_group * self.per_worker_batch}"
                            f" examples a micro-batch ({groups} group{'s' * (groups > 1)} of "
                            f"consecutive ranks)")
        return "\n".join(lines)

    def batch_text(self) -> str:
        """How the global batch is split: ``N examples per optimizer step = W workers x A
        accumulation step(s) x B per-worker batch``."""
        return (f"{self.global_batch_size} examples per optimizer step = {self.world_size} "
                f"workers x {self.accumulation_steps} accumulation step(s) x "
                f"{self.per_worker_batch} per-worker batch")

    def eval_text(self) -> str:
        if not self.eval_examples:
            return "none (no evaluation set)"
        subset = ("" if self.eval_examples == self.eval_set_examples else
                  f" of {self.eval_set_examples} (--eval-examples)")
        every = ("after every epoch" if self.eval_every_epochs == 1 else
                 f"after every {self.eval_every_epochs} epochs and the last")
        return (f"{self.eval_examples} examples{subset}, about "
                f"{self.eval_examples_per_worker} per worker in batches of "
                f"{self.eval_batch_size}, {every}")


def split_global_batch(global_batch: int, world_size: int, max_per_worker: int | None
                       ) -> tuple[int, int]:
    """(per-worker batch, accumulation steps) with world * accumulation * per_worker = global.

    The accumulation is the smallest that brings the per-worker batch under
    ``max_per_worker``. Raises UsageError naming the nearest valid global batches.
    """
    if world_size < 1:
        raise UsageError(f"the world size must be >= 1 (got {world_size}).")
    if global_batch % world_size:
        below = global_batch // world_size * world_size
        above = below + world_size
        nearest = [b for b in (below, above) if b > 0]
        raise UsageError(
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
    facts = datasets.DATASETS[d.dataset]
    model_shape = models.input_shape(config.model.model)
    shape = facts.shape or model_shape
    if d.dataset == "synthetic" and d.image_size:
        shape = (d.image_size, d.image_size, model_shape[-1])
    classes = facts.classes or d.num_classes or 1000
    train = facts.train if facts.train is not None else d.synthetic_examples
    eval_examples = facts.eval
    if d.dataset == "imagenet":
        # A converted set that is not ImageNet itself says what it holds (make_tfrecords).
        manifest = datasets.read_manifest(d.data_dir) or {}
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
    r, s = config.job, config.schedule
    per_worker, accumulation = split_global_batch(
        r.global_batch_size, world_size, r.max_per_worker_batch)
    input_shape, classes, train_examples, eval_examples = dataset_shape(config)
    e = config.evaluation
    evaluated = min(eval_examples, e.eval_examples or eval_examples)
    steps_per_epoch = steps_in_epoch(r.global_batch_size, train_examples)
    peak, rule = peak_learning_rate(config, r.global_batch_size)
    phases = resolve_phases(config, world_size, train_examples)
    check_bn_group(config.model.bn_group, world_size)
    return Plan(
        world_size=world_size,
        global_batch_size=r.global_batch_size,
        per_worker_batch=per_worker,
        accumulation_steps=accumulation,
        train_examples=train_examples,
        steps_per_epoch=steps_per_epoch,
        micro_steps_per_epoch=steps_per_epoch * accumulation,
        epochs=r.epochs,
        total_steps=sum(p.steps for p in phases) if phases else steps_per_epoch * r.epochs,
        warmup_steps=round(s.warmup_epochs * steps_per_epoch),
        peak_learning_rate=peak,
        learning_rate_rule=rule,
        input_shape=input_shape,
        num_classes=classes,
        eval_set_examples=eval_examples,
        eval_examples=evaluated,
        eval_examples_per_worker=evaluated // world_size,
        # The per-worker training batch fits the worker's memory for training, which needs
        # more than evaluation at the same batch (no gradients, no optimizer state).
        eval_batch_size=e.eval_batch_size or per_worker,
        eval_every_epochs=e.eval_every_epochs,
        phases=phases,
        bn_group=config.model.bn_group,
    )


def check_bn_group(group: int, world_size: int) -> None:
    """Refuses a ``--bn-group`` that does not split ``world_size`` workers into equal groups."""
    if group <= world_size and world_size % group == 0:
        return
    sizes = [str(n) for n in range(1, world_size + 1) if world_size % n == 0]
    if len(sizes) > 12:
        sizes = [*sizes[:10], "...", sizes[-1]]
    why = "exceeds" if group > world_size else "does not divide"
    raise UsageError(f"--bn-group {group} {why} the world size {world_size}: batch norm needs "
                     f"equal groups of workers; choose one of {', '.join(sizes)}.")


def steps_in_epoch(global_batch: int, train_examples: int, where: str = "") -> int:
    """Optimizer steps in an epoch (the remainder is dropped); refuses a batch above the set."""
    steps = train_examples // global_batch
    if steps == 0:
        raise UsageError(
            f"{where}--global-batch-size {global_batch} is larger than the {train_examples} "
            f"training examples: not one optimizer step per epoch. Lower the global batch.")
    return steps


def peak_learning_rate(config: TrainConfig, global_batch: int) -> tuple[float, str]:
    """The peak LR at ``global_batch`` and how it was obtained."""
    s = config.schedule
    if s.lr_scaling != "linear":
        return s.learning_rate, "absolute"
    peak = linear_scaled_learning_rate(s.learning_rate, global_batch, s.reference_batch_size)
    return peak, (f"linear scaling: {s.learning_rate:g} per {s.reference_batch_size} examples "
                  f"x {global_batch}/{s.reference_batch_size}")


def resolve_phases(config: TrainConfig, world_size: int, train_examples: int
                   ) -> tuple[Phase, ...]:
    """The phases of ``--batch-schedule`` on ``world_size`` workers (() without one): each
    phase's batch split as a fixed batch is, its LR by the plan's rule at its batch."""
    r = config.job
    starts = batch_phases.parse(r.batch_schedule, r.epochs, r.global_batch_size)
    result = []
    for i, (first, batch) in enumerate(starts):
        last = starts[i + 1][0] - 1 if i + 1 < len(starts) else r.epochs
        where = f"{batch_phases.FLAG}, from epoch {first}: " if i else ""
        try:
            per_worker, accumulation = split_global_batch(batch, world_size,
                                                          r.max_per_worker_batch)
        except UsageError as err:
            raise UsageError(where + str(err).replace("--global-batch-size ", "batch ", 1)
                             if i else str(err)) from None
        result.append(Phase(first, last, batch, per_worker, accumulation,
                            steps_in_epoch(batch, train_examples, where),
                            peak_learning_rate(config, batch)[0]))
    return tuple(result)


def plan_json(config: TrainConfig, plan: Plan) -> str:
    return json.dumps({"config": config.to_dict(), "plan": plan.to_dict()}, indent=2)
