"""The pieces of a training run: optimizer, run directory, checkpoints, callbacks, fit.

``lars_hvd.train.main`` strings them together; each is importable and tested on its own.
Every Horovod call goes through ``lars_hvd.distributed``; rank 0 alone writes files.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.config import Plan, TrainConfig, plan_json
from lars_hvd.files import atomic_write_text
from lars_hvd.optimizer import LARS
from lars_hvd.schedules import PerOptimizerStep, warmup_then_decay

PRECISION_POLICIES = {"fp32": "float32", "mixed_bfloat16": "mixed_bfloat16",
                      "mixed_float16": "mixed_float16"}
# Settings that may differ between a run and its resumption.
RESUMABLE_DIFFERENCES = {"run.resume", "run.run_dir", "run.log_every_steps",
                         "run.keep_checkpoints", "run.eval_batch_size", "run.xla",
                         "run.deterministic"}


# -- files ---------------------------------------------------------------------------------

def default_run_dir(root: Path = Path("runs")) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def prepare_run_dir(config: TrainConfig, plan: Plan) -> Path:
    """Rank 0: creates (or, with --resume, checks) the run directory and writes the plan.

    Never overwrites a previous run: an existing run directory needs --resume, and --resume
    needs a checkpoint made with the same settings.
    """
    run_dir = Path(config.run.run_dir) if config.run.run_dir else default_run_dir()
    saved = run_dir / "plan.json"
    if config.run.resume:
        if not saved.is_file() or tf.train.latest_checkpoint(checkpoint_dir(run_dir)) is None:
            fix = ("start over with another --run-dir, or remove it yourself if nothing in "
                   "it is worth keeping" if run_dir.is_dir() and any(run_dir.iterdir())
                   else "drop --resume to start a new run there")
            raise ValueError(
                f"--resume: {run_dir} holds no checkpoint to continue from (it needs "
                f"plan.json and checkpoints/, written at the end of each epoch); {fix}."
            )
        check_resumable(json.loads(saved.read_text())["config"], config.to_dict(), run_dir)
        atomic_write_text(run_dir / f"plan-resumed-on-{plan.world_size}-workers.json",
                          plan_json(config, plan))
    else:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ValueError(
                f"{run_dir} already holds a run; pass --resume to continue it, or choose "
                f"another --run-dir (nothing was changed)."
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, plan_json(config, plan))
    return run_dir


def check_resumable(saved: dict, current: dict, run_dir: Path) -> None:
    """Raises ValueError listing the settings that differ from the run being resumed."""
    differences = []
    for section, values in saved.items():
        for key, old in values.items():
            new = current.get(section, {}).get(key, "<not a setting any more>")
            if isinstance(old, list):
                old = tuple(old)
            if f"{section}.{key}" not in RESUMABLE_DIFFERENCES and old != new:
                differences.append(f"--{key.replace('_', '-')} was {old!r}, now {new!r}")
    if differences:
        raise ValueError(
            f"--resume: {run_dir} was trained with other settings: " + "; ".join(differences)
            + ". Resume with the run's own flags (see its plan.json)."
        )


# -- model and optimizer -------------------------------------------------------------------

def low_rank_names(model: tf.keras.Model) -> list[str]:
    """Exact-match regexes for the rank <= 1 variables (biases, BN gamma/beta)."""
    return [f"^{re.escape(v.name)}$" for v in model.trainable_variables if v.shape.rank <= 1]


def build_schedule(config: TrainConfig, plan: Plan):
    """The LR schedule, indexed by what Keras's ``optimizer.iterations`` counts."""
    s = config.schedule
    schedule = warmup_then_decay(
        plan.peak_learning_rate, plan.total_steps, plan.warmup_steps,
        warmup_start_learning_rate=s.warmup_start_lr, decay=s.decay, poly_power=s.poly_power,
        end_learning_rate=s.end_learning_rate, step_factor=s.step_factor,
        step_boundaries=tuple(round(e * plan.steps_per_epoch) for e in s.step_boundaries),
    )
    if plan.accumulation_steps > 1:
        # Horovod: with backward_passes_per_step = k, iterations advances on every
        # micro-batch; the schedule must advance once per optimizer step.
        schedule = PerOptimizerStep(schedule, plan.accumulation_steps)
    return schedule


def build_optimizer(config: TrainConfig, plan: Plan, model: tf.keras.Model):
    """LARS, Keras SGD with momentum, or LAMB (tensorflow-addons), with the run's schedule."""
    o = config.optimizer
    schedule = build_schedule(config, plan)
    excluded = low_rank_names(model) if o.exclude_low_rank else []
    if o.optimizer == "lars":
        return LARS(
            learning_rate=schedule, momentum=o.momentum, nesterov=o.nesterov,
            weight_decay_rate=o.weight_decay, trust_coefficient=o.trust_coefficient,
            epsilon=o.lars_epsilon, trust_ratio_mode=o.trust_ratio_mode,
            exclude_low_rank=o.exclude_low_rank, record_trust_ratios=True,
        )
    if o.optimizer == "sgd":
        return tf.keras.optimizers.SGD(
            learning_rate=schedule, momentum=o.momentum, nesterov=o.nesterov,
            weight_decay=o.weight_decay or None,
        )
    if o.optimizer == "lamb":
        import tensorflow_addons as tfa

        return tfa.optimizers.LAMB(
            learning_rate=schedule, weight_decay=o.weight_decay,
            exclude_from_weight_decay=excluded, exclude_from_layer_adaptation=excluded,
        )
    raise ValueError(f"Unknown optimizer {o.optimizer!r}; choose lars, sgd or lamb.")


def apply_sgd_exclusions(optimizer, model: tf.keras.Model, config: TrainConfig) -> None:
    """Keras SGD keeps weight-decay exclusions outside its config, so Horovod's rebuild drops
    them: set them on the final (wrapped) instance instead."""
    if config.optimizer.optimizer == "sgd" and config.optimizer.weight_decay:
        if config.optimizer.exclude_low_rank:
            optimizer.exclude_from_weight_decay(
                var_list=[v for v in model.trainable_variables if v.shape.rank <= 1])


def compile_model(model: tf.keras.Model, config: TrainConfig, plan: Plan) -> None:
    """Compiles ``model`` with the run's optimizer, wrapped by Horovod for ``plan``."""
    optimizer = distributed.distributed_optimizer(
        build_optimizer(config, plan, model),
        # Horovod: accumulate micro-batches locally, then one allreduce per optimizer step.
        backward_passes_per_step=plan.accumulation_steps,
        fp16_allreduce=config.run.fp16_allreduce,
    )
    apply_sgd_exclusions(optimizer, model, config)
    model.compile(optimizer=optimizer,
                  loss=loss_function(plan.num_classes, config.model.label_smoothing),
                  metrics=["accuracy"])


def build_optimizer_state(optimizer, variables) -> None:
    """Creates the optimizer's slots now (to restore or broadcast them before step 1)."""
    if hasattr(optimizer, "build"):
        optimizer.build(variables)
    else:  # Keras legacy optimizers (tensorflow-addons LAMB)
        optimizer._create_all_weights(variables)


def optimizer_variables(optimizer) -> list:
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


def inner_optimizer(optimizer):
    """The optimizer under a mixed-precision loss-scale wrapper, if any."""
    return getattr(optimizer, "inner_optimizer", optimizer)


# -- checkpoints ---------------------------------------------------------------------------

@dataclass
class RunState:
    """What a checkpoint holds besides the model and optimizer."""

    epoch: tf.Variable  # epochs completed
    step: tf.Variable  # optimizer steps completed (independent of accumulation)

    @classmethod
    def new(cls) -> RunState:
        return cls(tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch"),
                   tf.Variable(0, dtype=tf.int64, trainable=False, name="step"))


def make_checkpoint(model, optimizer, state: RunState) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=state.epoch,
                               step=state.step)


def restore(run_dir: Path, model, optimizer, state: RunState, plan: Plan) -> int:
    """Restores model, optimizer slots, epoch and step; returns the epoch to start from.

    Rank 0 reads the checkpoint; the other ranks receive it by broadcast, so no shared file
    system is needed. Keras's ``iterations`` is re-derived from the optimizer step, so a run
    may resume on another number of workers (other accumulation) with the same schedule.
    """
    build_optimizer_state(optimizer, model.trainable_variables)
    outcome = None
    if distributed.is_rank0():
        try:
            outcome = ("ok", restore_newest_good(run_dir, model, optimizer, state))
        except ValueError as err:
            outcome = ("error", str(err))
    # Horovod: every rank learns whether rank 0 could restore (a refusal stops them all).
    status, value = distributed.broadcast_object(outcome)
    if status == "error":
        raise ValueError(value)
    # Horovod: every rank continues from rank 0's restored state.
    distributed.broadcast_variables(model.variables + optimizer_variables(optimizer)
                                    + [state.epoch, state.step])
    optimizer.iterations.assign(int(state.step) * plan.accumulation_steps)
    return int(state.epoch)


def restore_newest_good(run_dir: Path, model, optimizer, state: RunState) -> str:
    """Rank 0: restores the newest checkpoint that can be read into this model, skipping a
    damaged one (a truncated or corrupt file) with a warning. Returns its path."""
    folder = checkpoint_dir(run_dir)
    index = tf.train.get_checkpoint_state(str(folder))
    candidates = list(reversed(index.all_model_checkpoint_paths)) if index else []
    if not candidates:
        raise ValueError(f"--resume: {folder} lists no checkpoint to continue from.")
    failures = []
    for path in candidates:
        try:
            make_checkpoint(model, optimizer, state).restore(
                path).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError) as err:
            # (a truncated file raises IndexError from TF's reader, a corrupt one an OpError)
            reason = str(err).strip().splitlines()[0][:300]
            failures.append(f"{Path(path).name}: {reason}")
            print(f"WARNING: checkpoint {path} cannot be restored ({reason}); trying the "
                  f"previous one", file=sys.stderr, flush=True)
            continue
        print(f"resumed from {path}: epoch {int(state.epoch)}, step {int(state.step)}",
              flush=True)
        return path
    raise ValueError(
        f"--resume: no checkpoint in {folder} can be restored into this model "
        f"({'; '.join(failures)}). Was it made by another model? Start a new --run-dir."
    )


def weights_are_finite(model) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.variables
               if v.dtype.is_floating)


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Rank 0: one checkpoint per epoch, through tf.train.CheckpointManager.

    TF writes the checkpoint files first and then atomically replaces the ``checkpoint``
    index, so an interrupted save leaves the previous checkpoint as the latest. An epoch
    whose loss or weights are not finite is not saved: the last good checkpoint stays.
    """

    def __init__(self, run_dir: Path, state: RunState, plan: Plan, keep: int):
        super().__init__()
        self.run_dir, self.state, self.plan, self.keep = run_dir, state, plan, keep
        self.manager = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if (loss is not None and not math.isfinite(loss)) or not weights_are_finite(self.model):
            print(f"not checkpointing epoch {epoch + 1}: the loss or the weights are not "
                  f"finite; the last good checkpoint is kept", file=sys.stderr, flush=True)
            return
        self.state.epoch.assign(epoch + 1)
        self.state.step.assign(int(self.model.optimizer.iterations)
                               // self.plan.accumulation_steps)
        if self.manager is None:
            checkpoint = make_checkpoint(self.model, self.model.optimizer, self.state)
            self.manager = tf.train.CheckpointManager(
                checkpoint, checkpoint_dir(self.run_dir), max_to_keep=self.keep,
                checkpoint_name="epoch")
        self.manager.save(checkpoint_number=epoch + 1)


# -- logging -------------------------------------------------------------------------------

class Diagnostics(tf.keras.callbacks.Callback):
    """Rank 0: the learning rate and LARS's per-layer trust ratios in TensorBoard, every N
    optimizer steps (a scalar ``trust_ratio/<variable>`` per adapted variable)."""

    def __init__(self, log_dir: Path, plan: Plan, every_steps: int):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.plan, self.every = plan, every_steps
        self._micro_batch = None  # the micro-batch counter, mirrored in Python
        self._supports_tf_logs = True  # never makes Keras convert the logs to NumPy

    def on_train_batch_end(self, batch, logs=None):
        optimizer = inner_optimizer(self.model.optimizer)
        if self._micro_batch is None:  # read the device counter once, then count here:
            self._micro_batch = int(optimizer.iterations)  # a read per batch is a sync
        else:
            self._micro_batch += 1
        iterations = self._micro_batch
        if iterations % self.plan.accumulation_steps:
            return  # mid-accumulation: no optimizer step was taken
        step = iterations // self.plan.accumulation_steps
        if step % self.every and step != 1:
            return
        with self.writer.as_default(step=step):
            lr = optimizer.learning_rate
            if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
                lr = lr(optimizer.iterations - 1)  # legacy optimizers keep the schedule
            tf.summary.scalar("learning_rate", float(lr))
            if isinstance(optimizer, LARS) and optimizer.record_trust_ratios:
                for name, ratio in optimizer.trust_ratios().items():
                    tf.summary.scalar(f"trust_ratio/{name.split(':')[0]}", ratio)
        self.writer.flush()


def callbacks(config: TrainConfig, plan: Plan, run_dir: Path, state: RunState) -> list:
    """Horovod's callbacks first, then (rank 0 only) logs and checkpoints."""
    result = distributed.callbacks()
    result.append(tf.keras.callbacks.TerminateOnNaN())
    if distributed.is_rank0():
        result += [
            tf.keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
            tf.keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), profile_batch=0,
                                           update_freq=config.run.log_every_steps),
            Diagnostics(run_dir / "tensorboard" / "lars", plan, config.run.log_every_steps),
            EpochCheckpoint(run_dir, state, plan, config.run.keep_checkpoints),
        ]
    return result


# -- the run -------------------------------------------------------------------------------

@dataclass
class Summary:
    test_accuracy: float | None
    images_per_second: float
    wall_seconds: float
    global_batch_size: int
    world_size: int
    epochs_run: int
    run_dir: str

    def line(self) -> str:
        accuracy = "n/a" if self.test_accuracy is None else f"{self.test_accuracy:.4f}"
        return (f"test accuracy {accuracy} | {self.images_per_second:.0f} images/s | wall "
                f"{self.wall_seconds:.1f} s | global batch {self.global_batch_size} | world "
                f"size {self.world_size}")


def recompute_bn_statistics(model, train: tf.data.Dataset, examples: int,
                            batch_size: int) -> int:
    """Replaces every BN layer's moving mean and variance by their average over about
    ``examples`` training examples at the final weights, then averages them over ranks.

    A large-batch run takes few steps (15 at batch 16K over 5 Fashion-MNIST epochs), and BN's
    exponential moving averages still carry the statistics of early, very different weights:
    test accuracy then collapses while training accuracy is fine. Recomputing them ("precise
    BN") removes that lag. Returns the number of batches used (0 without BN layers).
    """
    layers = [layer for layer in model.submodules
              if isinstance(layer, tf.keras.layers.BatchNormalization)]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    batches = max(1, math.ceil(examples / batch_size))
    try:
        for i, (x, _) in enumerate(train.take(batches)):
            for layer in layers:
                layer.momentum = i / (i + 1)  # a running mean: batch 0 replaces, then averages
            model(x, training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    statistics = [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
    # Horovod: each rank averaged its own examples; the mean over ranks is everyone's.
    for variable, mean in zip(statistics, distributed.allreduce_mean_list(statistics),
                              strict=True):
        variable.assign(mean)
    return batches


def evaluate_dataset(model, dataset: tf.data.Dataset) -> float | None:
    """Accuracy over the whole evaluation set, counted exactly: each rank counts the correct
    predictions and examples of its part (the parts may differ in size), then the sums."""
    predict = tf.function(lambda x: tf.argmax(model(x, training=False), axis=-1,
                                              output_type=tf.int32))
    correct = examples = 0
    for x, y in dataset:
        correct += int(tf.reduce_sum(tf.cast(
            tf.equal(predict(x), tf.cast(tf.reshape(y, [-1]), tf.int32)), tf.int64)))
        examples += int(x.shape[0])
    # Horovod: the whole set's counts are the sums of the ranks' counts.
    correct, examples = (float(v) for v in distributed.allreduce_sum(
        tf.constant([correct, examples], tf.float64)).numpy())
    return correct / examples if examples else None


def evaluate(model, eval_x, eval_y, batch_size: int) -> float | None:
    """Accuracy over the whole evaluation set: each rank its shard, then the mean."""
    if eval_x is None:
        return None
    metrics = model.evaluate(eval_x, eval_y, batch_size=batch_size, verbose=0,
                             return_dict=True)
    # Horovod: equal shards on every rank, so the mean of the ranks' accuracies is exact.
    return float(distributed.allreduce_mean(tf.constant(metrics["accuracy"], tf.float32)))


def placement(hosts: list[str]) -> str:
    """``"node1 (ranks 0-7), node2 (ranks 8-15)"`` from each rank's host name, in rank order."""
    groups: dict[str, list[int]] = {}
    for rank, host in enumerate(hosts):
        groups.setdefault(host, []).append(rank)

    def spans(ranks):
        runs: list[list[int]] = []
        for rank in ranks:
            if runs and rank == runs[-1][1] + 1:
                runs[-1][1] = rank
            else:
                runs.append([rank, rank])
        return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)

    return ", ".join(f"{host} (rank{'s' if len(r) > 1 else ''} {spans(r)})"
                     for host, r in groups.items())


def weights_digest(model) -> str:
    """A SHA-256 of the trainable weights' bytes: equal digests, bitwise equal weights."""
    digest = hashlib.sha256()
    for variable in model.trainable_variables:
        digest.update(variable.numpy().tobytes())
    return digest.hexdigest()[:16]


def check_replicas(model) -> bool:
    """Whether every rank ends with bitwise the same trained weights (printed by rank 0).

    Horovod keeps replicas identical by construction (the same broadcast start, the same
    averaged gradients); a difference means a rank trained on something else, and is worth a
    loud line rather than a silent checkpoint of rank 0's copy only."""
    # Horovod: each rank's digest, on every rank.
    digests = distributed.allgather_object(weights_digest(model))
    agree = len(set(digests)) == 1
    if distributed.is_rank0():
        if agree:
            print(f"replicas agree: trained weights bitwise identical on all {len(digests)} "
                  f"workers (sha256 {digests[0]})", flush=True)
        else:
            print(f"WARNING: replicas differ: trained weights per rank {digests}; the "
                  f"checkpoint holds rank 0's", flush=True)
    return agree


def report_bad_records(counter, limit: int) -> int | None:
    """Prints, on rank 0, how many bad records all workers skipped (each was printed)."""
    if counter is None:
        return None
    # Horovod: every rank counted its own records.
    total = int(distributed.allreduce_sum(tf.identity(counter)).numpy())
    if distributed.is_rank0():
        print(f"bad records skipped: {total} over all workers and epochs (limit {limit} per "
              f"worker; each is printed above as 'lars_hvd: skipped bad data')", flush=True)
    return total


def fit(model, data, config: TrainConfig, plan: Plan, run_dir: Path, state: RunState,
        initial_epoch: int, extra_callbacks=()) -> Summary:
    verbose = 0
    if distributed.is_rank0():
        verbose = 1 if sys.stdout.isatty() else 2  # progress bar on a terminal only
    start = time.perf_counter()
    steps_before = int(state.step)
    history = model.fit(
        data.train,
        epochs=plan.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=plan.micro_steps_per_epoch,
        validation_data=(data.eval if data.eval is not None else
                         None if data.eval_x is None else (data.eval_x, data.eval_y)),
        validation_batch_size=config.run.eval_batch_size,
        callbacks=callbacks(config, plan, run_dir, state) + list(extra_callbacks),
        verbose=verbose,
    )
    wall = time.perf_counter() - start
    losses = history.history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise FloatingPointError(
            f"training stopped: the loss became {losses[-1]} in epoch {len(losses)}. Nothing "
            f"of that epoch was saved; the checkpoints of the epochs before it are in "
            f"{checkpoint_dir(run_dir)}. Lower --learning-rate or lengthen --warmup-epochs."
        )
    steps = int(model.optimizer.iterations) // plan.accumulation_steps - steps_before
    if config.run.bn_recompute_examples:
        recompute_bn_statistics(model, data.train, config.run.bn_recompute_examples,
                                plan.per_worker_batch)
    if data.eval is not None:
        accuracy = evaluate_dataset(model, data.eval)
    else:
        accuracy = evaluate(model, data.eval_x, data.eval_y, config.run.eval_batch_size)
    report_bad_records(data.bad_records, config.data.max_bad_records)
    if plan.world_size > 1:
        check_replicas(model)
    return Summary(
        test_accuracy=accuracy,
        images_per_second=steps * plan.global_batch_size / wall if wall > 0 else 0.0,
        wall_seconds=wall,
        global_batch_size=plan.global_batch_size,
        world_size=plan.world_size,
        epochs_run=len(losses),
        run_dir=str(run_dir),
    )




def enable_xla_autoclustering() -> None:
    """XLA auto-clustering: compiles what XLA can and leaves Horovod's allreduce outside
    (a whole-step ``jit_compile=True`` cannot hold Horovod's ops). On CPUs TF clusters only
    with ``--tf_xla_cpu_global_jit`` in TF_XLA_FLAGS, which ``lars_hvd.train`` sets before
    TensorFlow is imported."""
    tf.config.optimizer.set_jit("autoclustering")


def loss_function(num_classes: int, label_smoothing: float):
    """Cross-entropy on integer labels and float32 logits, with optional label smoothing."""
    if not label_smoothing:
        return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def smoothed_cross_entropy(y_true, logits):
        one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes)
        return tf.keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=label_smoothing)

    return smoothed_cross_entropy


def _rank0_prepares_run_dir(config: TrainConfig, plan: Plan) -> Path:
    """Rank 0 creates or checks the run directory; every rank gets the outcome, so a refusal
    stops all ranks with the same message instead of leaving the others waiting."""
    outcome = None
    if distributed.is_rank0():
        try:
            outcome = ("ok", str(prepare_run_dir(config, plan)))
        except ValueError as err:
            outcome = ("error", str(err))
    # Horovod: share rank 0's decision.
    status, value = distributed.broadcast_object(outcome)
    if status == "error":
        raise ValueError(value)
    return Path(value)


def print_placement() -> None:
    """Rank 0 prints where every rank runs (the first thing to check on a new cluster)."""
    # Horovod: every rank's host name.
    hosts = distributed.allgather_object(socket.gethostname())
    if distributed.is_rank0():
        print(f"workers                  {placement(hosts)}", flush=True)


ELASTIC_MARKER = "elastic-job.txt"


def elastic_job() -> str:
    """This elastic job's identity: its driver's rendezvous address (the same for every
    worker of the job, including those that join later)."""
    return (f"{os.environ.get('HOROVOD_GLOO_RENDEZVOUS_ADDR', '')}:"
            f"{os.environ.get('HOROVOD_GLOO_RENDEZVOUS_PORT', '')}")


def elastic_run_dir(config: TrainConfig, plan: Plan) -> Path:
    """The run directory of an elastic job, without collectives: rank 0 of the first world
    prepares it as usual (a new run, or --resume) and marks it with the job's identity; a
    worker that joins later finds the mark. ``check_elastic_run_dir`` refuses to train in a
    directory that this job did not prepare."""
    run_dir = Path(config.run.run_dir)
    marker = run_dir / ELASTIC_MARKER
    if marker.is_file() and marker.read_text() == elastic_job():
        return run_dir  # joining this job
    if distributed.is_rank0():
        run_dir = prepare_run_dir(config, plan)
        atomic_write_text(marker, elastic_job())
    return run_dir


def check_elastic_run_dir(run_dir: Path) -> None:
    marker = run_dir / ELASTIC_MARKER
    if not (marker.is_file() and marker.read_text() == elastic_job()):
        raise ValueError(f"{run_dir} was not prepared by this elastic job (rank 0 refused it "
                         f"or failed first); see rank 0's message.")


def describe_manifest(optimizer, model) -> str:
    lars = inner_optimizer(optimizer)
    if not isinstance(lars, LARS):
        return ""
    rows = lars.manifest(model.trainable_variables)
    adapted = [r["name"] for r in rows if r["layer_adaptation"]]
    decayed = [r["name"] for r in rows if r["weight_decay"]]
    skipped = [r["name"] for r in rows if not r["layer_adaptation"]]
    return (f"LARS: {len(adapted)} of {len(rows)} variables adapted, {len(decayed)} decayed; "
            f"excluded from both: {len(skipped)} ({', '.join(skipped[:6])}"
            f"{', ...' if len(skipped) > 6 else ''})")


class ElasticCommit(tf.keras.callbacks.Callback):
    """Elastic Horovod: at each epoch's end, record the epoch and commit the state.

    A reset rolls back to the last commit, the start of an epoch; the epoch's data order is
    keyed on (seed, epoch) only, so the replay reads the same global batches. Workers that
    join are let in at commits. (Runs after the checkpoint callback: last in the list.)
    """

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_epoch_end(self, epoch, logs=None):
        self.state.epoch = epoch + 1
        self.state.commit()


def recompile_for_plan(model, config: TrainConfig, plan: Plan, elastic) -> None:
    """Elastic: compiles ``model`` with a new wrapped optimizer for ``plan`` (its
    accumulation steps and schedule) that continues the current one: same slots, and Keras's
    ``iterations`` re-derived from the committed epoch (a commit is an epoch's end)."""
    old = model.optimizer
    compile_model(model, config, plan)
    build_optimizer_state(model.optimizer, model.trainable_variables)
    pairs = list(zip(optimizer_variables(old), optimizer_variables(model.optimizer),
                     strict=True))
    for source, target in pairs:
        if source.shape != target.shape:
            raise AssertionError(f"optimizer variable {source.name} {source.shape} does not "
                                 f"fit {target.name} {target.shape}")
        target.assign(source)
    model.optimizer.iterations.assign(
        int(elastic.epoch) * plan.steps_per_epoch * plan.accumulation_steps)
    # Horovod: commits, rollbacks and syncs now cover the new optimizer's variables.
    elastic.optimizer = model.optimizer
    elastic.save()


def fit_elastic(model, config: TrainConfig, run_dir: Path, state: RunState,
                initial_epoch: int, extra_callbacks=()) -> Summary:
    """``fit`` under elastic Horovod: after every change of the worker set the plan is
    re-derived for the new count (the global batch, the steps and the LR schedule stay; the
    per-worker batch and the accumulation steps change), the optimizer re-wrapped for the new
    accumulation, the data re-sharded, and training goes on from the last committed epoch,
    with the survivors' (or rank 0's, for a newcomer) state."""
    from lars_hvd.config import resolve
    from lars_hvd.data import make_datasets

    # Horovod: the state that is rolled back on a failure and sent to joining workers.
    elastic = distributed.elastic_state(model, epoch=initial_epoch)

    def train(elastic):
        check_elastic_run_dir(run_dir)
        plan = resolve(config, distributed.size())
        # Horovod: backward_passes_per_step is fixed when the optimizer is wrapped, so every
        # new worker count gets a newly wrapped optimizer (this also drops any half-summed
        # micro-batch gradients of an epoch that a lost worker cut short).
        recompile_for_plan(model, config, plan, elastic)
        print_placement()
        if distributed.is_rank0():
            print(f"elastic: {plan.world_size} worker(s) from epoch {elastic.epoch + 1}: "
                  f"{plan.describe().splitlines()[1].split(maxsplit=2)[2]}", flush=True)
        data = make_datasets(config, plan, distributed.rank(), elastic.epoch)
        return fit(model, data, config, plan, run_dir, state, elastic.epoch,
                   [*extra_callbacks, ElasticCommit(elastic)])

    # Horovod: re-run train() after every reset, with the state synchronized.
    return distributed.elastic_run(train)(elastic)


def run(config: TrainConfig, extra_callbacks=()) -> Summary:
    """One training run on this process's Horovod world (init must have run)."""
    from lars_hvd.config import resolve
    from lars_hvd.data import check as check_data
    from lars_hvd.data import make_datasets
    from lars_hvd.models import build as build_model

    plan = resolve(config, distributed.size())
    check_data(config, plan)  # the same on every rank, before any collective
    elastic = config.run.elastic
    # Horovod (elastic): no collective before the elastic loop, which a worker that joins
    # later enters directly.
    run_dir = elastic_run_dir(config, plan) if elastic else _rank0_prepares_run_dir(config, plan)
    rank0 = distributed.is_rank0()
    if rank0:
        print(plan.describe(), flush=True)
    if not elastic:
        print_placement()
    if config.run.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.run.xla:
        enable_xla_autoclustering()
    tf.keras.mixed_precision.set_global_policy(PRECISION_POLICIES[config.run.precision])
    tf.keras.utils.set_random_seed(config.run.seed)

    model = build_model(config.model.model, plan.input_shape, plan.num_classes,
                        bn_momentum=config.model.bn_momentum)
    compile_model(model, config, plan)
    state = RunState.new()
    if config.run.resume and not elastic:
        initial_epoch = restore(run_dir, model, model.optimizer, state, plan)
    else:
        initial_epoch = 0
        build_optimizer_state(model.optimizer, model.trainable_variables)
        if config.run.resume and rank0:  # elastic: the state sync sends it to the others
            restore_newest_good(run_dir, model, model.optimizer, state)
            model.optimizer.iterations.assign(int(state.step) * plan.accumulation_steps)
            initial_epoch = int(state.epoch)
        if not elastic:
            # Horovod: every rank starts from rank 0's initial weights (elastic: the sync).
            distributed.broadcast_model(model)
    if rank0:
        manifest = describe_manifest(model.optimizer, model)
        if manifest:
            print(manifest, flush=True)
    if config.run.elastic:
        summary = fit_elastic(model, config, run_dir, state, initial_epoch, extra_callbacks)
    else:
        data = make_datasets(config, plan, distributed.rank(), initial_epoch)
        summary = fit(model, data, config, plan, run_dir, state, initial_epoch,
                      extra_callbacks)
    rank0 = distributed.is_rank0()  # (rank 0 may be another process after elastic resets)
    if rank0:
        print(summary.line(), flush=True)
        atomic_write_text(run_dir / "summary.json", json.dumps(summary.__dict__, indent=2))
    return summary
