"""The Keras callbacks of a training run, in the order they must run."""

from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.optim.lars import LARS
from lars_hvd.planning.config import TrainConfig
from lars_hvd.planning.plan import Plan
from lars_hvd.run.checkpoints import EpochCheckpoint, RunState, StepCheckpoints
from lars_hvd.run.clock import StepClock
from lars_hvd.run.evaluation import EvalResult, evaluate
from lars_hvd.run.input_wait import InputWait, describe
from lars_hvd.run.optimizer_factory import inner_optimizer
from lars_hvd.run.preemption import StopOnSignal


class Diagnostics(tf.keras.callbacks.Callback):
    """Rank 0: TensorBoard's step-level scalars every N optimizer steps: Keras's batch logs
    (``batch_loss``, ``batch_accuracy``: the epoch's running mean so far, on rank 0's
    data), the learning rate, and LARS's
    per-layer trust ratios (a scalar ``trust_ratio/<variable>`` per adapted variable).

    Keras's own TensorBoard callback logs per epoch only (``EpochTensorBoard``): with a step
    ``update_freq`` it writes a summary per log at every batch (a cost on every step's path:
    ``python -m lars_hvd.bench overhead --workers 2`` measures it), here one write every N
    steps."""

    def __init__(self, log_dir: Path, clock: StepClock, every_steps: int):
        super().__init__()
        # Written to disk at each epoch's end and at least every 10 s, never per write: a
        # flush is a file write on rank 0's step path.
        self.writer = tf.summary.create_file_writer(str(log_dir), max_queue=1000,
                                                    flush_millis=10_000)
        self.clock, self.every = clock, every_steps
        self._supports_tf_logs = True  # never makes Keras convert the logs to NumPy

    def on_train_batch_end(self, batch, logs=None):
        step = self.clock.step
        if not self.clock.stepped or (step % self.every and step != 1):
            return  # mid-accumulation, or not a step to log
        values = {name: tf.convert_to_tensor(value, tf.float32)
                  for name, value in (logs or {}).items()}
        self._write(tf.constant(step, tf.int64), values)

    @tf.function
    def _write(self, step, logs):
        """One traced call for every scalar: eager, each would be a dispatch and a host read
        (``bench overhead`` measures the difference)."""
        optimizer = inner_optimizer(self.model.optimizer)
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                tf.summary.scalar(f"batch_{name}", value)
            # (for a schedule, Keras's variable holding the LR of the step just taken)
            tf.summary.scalar("learning_rate", optimizer.learning_rate)
            if isinstance(optimizer, LARS) and optimizer.record_trust_ratios:
                for name, record in optimizer.trust_ratio_records().items():
                    tf.summary.scalar(f"trust_ratio/{name.split(':')[0]}", record)

    def on_epoch_end(self, epoch, logs=None):
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.flush()


class EpochTensorBoard(tf.keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback at ``update_freq="epoch"``, minus its batch hook: Keras
    calls every callback's batch hooks once one callback needs them, and this one's writes
    ``batch_<log>`` summaries (no-ops at epoch frequency, still a cost at every step).
    The hook runs once, at the first batch, for the model graph; ``Diagnostics`` writes the
    step-level scalars."""

    def __init__(self, log_dir: Path):
        super().__init__(str(log_dir), profile_batch=0, update_freq="epoch")

    def on_train_batch_end(self, batch, logs=None):
        if self._should_write_train_graph:
            super().on_train_batch_end(batch, logs)


def say(text: str) -> None:
    """A time-stamped line on rank 0's output."""
    if distributed.is_rank0():
        print(f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} {text}", flush=True)


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass(frozen=True)
class TargetReached:
    """The first evaluation that reached ``--target-accuracy``: its epoch (1-based) and the
    seconds from the start of training to the end of that evaluation."""

    epoch: int
    seconds: float
    accuracy: float


class Evaluate(tf.keras.callbacks.Callback):
    """Every rank: evaluates after the epochs the plan says, exactly over all ranks, and puts
    ``val_accuracy`` and ``val_loss`` into the epoch's logs (NaN after an epoch that is not
    evaluated), so that the CSV log, TensorBoard and the checkpoint callback see them.

    With a ``target`` accuracy, the first evaluation that reaches it stops training (the
    accuracy is the sum over all ranks, so every rank stops after the same epoch, whose
    checkpoint is already written) and is kept in ``reached``. Its time is MLPerf's: from the
    start of training in this process (after Horovod's init, the model's build and compile,
    and the restore or broadcast of the starting state, which MLPerf counts as
    initialization) to the end of that evaluation, with every epoch, evaluation and
    checkpoint between."""

    def __init__(self, dataset, plan: Plan, every_seconds: float, stop: StopOnSignal,
                 target: float | None = None, started: float | None = None):
        super().__init__()
        self.dataset, self.plan, self.every_seconds = dataset, plan, every_seconds
        self.last: EvalResult | None = None
        self.stop = stop  # no evaluation of an epoch that a signal cut short
        self.target = target
        self.reached: TargetReached | None = None
        # (the run's start of training, kept across elastic resets; else the first fit's)
        self.started = started

    def on_train_begin(self, logs=None):
        if self.started is None:
            self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        result = None
        if (self.dataset is not None and self.plan.evaluates_after(epoch + 1)
                and not self.stop.stopped):
            result = evaluate(self.model, self.dataset, batch_size=self.plan.eval_batch_size,
                              every_seconds=self.every_seconds,
                              say=lambda text: say(f"epoch {epoch + 1}: {text}"))
            self.last = result
            if (self.target is not None and self.reached is None
                    and result is not None and result.accuracy >= self.target):
                self.reached = TargetReached(epoch + 1, time.perf_counter() - self.started,
                                             result.accuracy)
                say(f"epoch {epoch + 1}: accuracy {result.accuracy:.4f} reached the target "
                    f"{self.target:g}" + ("; training stops" if epoch + 1 < self.plan.epochs
                                          else ""))
                self.model.stop_training = True
        if self.dataset is not None:
            logs["val_accuracy"] = result.accuracy if result else math.nan
            logs["val_loss"] = result.loss if result else math.nan


class Progress(tf.keras.callbacks.Callback):
    """Rank 0's lines while training: one line at each epoch's end, after its evaluation
    (loss and accuracy over the epoch, the evaluation's accuracy, images/s over the epoch's
    training, the learning rate, the share of the epoch's step time rank 0 waited for input
    (``wait``, an ``InputWait``) and the run's training time left), and inside an epoch, for
    long ones, a line at the run's first optimizer step, every ``every_steps`` steps and at
    least every ``every_seconds`` (at a step's end): epoch and step, the fraction of the
    epoch, the epoch's mean loss so far, images/s over the interval, the learning rate, the
    interval's input wait, and the time left in the epoch and the run."""

    def __init__(self, clock: StepClock, every_steps: int, every_seconds: float,
                 wait: InputWait | None = None):
        super().__init__()
        self.clock, self.every_steps, self.every_seconds = clock, every_steps, every_seconds
        self.wait = wait
        self._supports_tf_logs = True  # the loss is read (a sync) only when a line is due
        self.printed_once = False

    def on_epoch_begin(self, epoch, logs=None):
        self.began = self.last_time = self.trained_until = time.monotonic()
        # (a resumed epoch begins at the step its checkpoint was taken)
        self.first_step = self.last_step = self.clock.step_in_epoch()
        self.wait_mark = self.wait.totals() if self.wait else None

    def on_train_batch_end(self, batch, logs=None):
        if not self.clock.stepped:
            return  # mid-accumulation: no optimizer step yet
        plan, step = self.clock.plan, self.clock.step_in_epoch()
        now = self.trained_until = time.monotonic()
        if step == plan.steps_per_epoch or (
                self.printed_once and step % self.every_steps
                and now - self.last_time < self.every_seconds):
            return  # (the epoch's last step is in the epoch's line)
        seconds_per_step = (now - self.last_time) / max(1, step - self.last_step)
        images = (step - self.last_step) * plan.global_batch_size
        left_in_epoch = (plan.steps_per_epoch - step) * seconds_per_step
        say(f"epoch {self.clock.epoch + 1}/{plan.epochs} step {step}/{plan.steps_per_epoch} "
            f"({step / plan.steps_per_epoch:.0%}) | loss "
            f"{float((logs or {}).get('loss', math.nan)):.4f} | "
            f"{rate(images / max(now - self.last_time, 1e-9))} images/s | lr "
            f"{current_learning_rate(self.model.optimizer):.4g} | "
            f"{describe(self.wait.interval_share()) + ' | ' if self.wait else ''}ETA epoch "
            f"{duration(left_in_epoch)}, run {duration(self._left(seconds_per_step, step))} "
            f"(training only)")
        self.printed_once = True
        self.last_time, self.last_step = now, step

    def on_epoch_end(self, epoch, logs=None):
        plan, logs, step = self.clock.plan, logs or {}, self.clock.step_in_epoch()
        steps = step - self.first_step  # this run's steps of the epoch
        seconds = self.trained_until - self.began
        fields = [f"epoch {epoch + 1}/{plan.epochs}" + (
            f" step {step}/{plan.steps_per_epoch}"
            if step < plan.steps_per_epoch else "")]  # (an epoch a signal cut short)
        for name, label in (("loss", "loss"), ("accuracy", "accuracy"),
                            ("val_accuracy", "val accuracy")):
            if name in logs and not math.isnan(float(logs[name])):
                fields.append(f"{label} {float(logs[name]):.4f}")
        fields += [f"{rate(steps * plan.global_batch_size / max(seconds, 1e-9))} images/s",
                   f"lr {current_learning_rate(self.model.optimizer):.4g}"]
        if self.wait:
            fields.append(describe(self.wait.share_since(self.wait_mark)))
        fields.append(f"ETA run {duration(self._left(seconds / max(steps, 1), step))} "
                      f"(training only)")
        say(" | ".join(fields))

    def _left(self, seconds_per_step: float, step: int) -> float:
        """Training seconds left in the run after ``step`` of this epoch."""
        plan = self.clock.plan
        return ((plan.steps_per_epoch - step)
                + (plan.epochs - self.clock.epoch - 1) * plan.steps_per_epoch) * seconds_per_step


def rate(value: float) -> str:
    """A rate with three significant digits below 100 (a slow CPU step), else whole."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def current_learning_rate(optimizer) -> float:
    """The learning rate of the step just taken."""
    optimizer = inner_optimizer(optimizer)
    lr = optimizer.learning_rate
    if isinstance(lr, tf.keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations - 1)
    return float(lr)


@dataclass
class RunCallbacks:
    """A run's callbacks (``ordered``, in the order they must run) and the three that the run
    reads afterwards."""

    ordered: list
    stop: StopOnSignal  # .stopped: the signal's Preempted, if one stopped the run
    evaluation: Evaluate  # .last: the last evaluation's result
    wait: InputWait  # .share(): this rank's step time spent waiting for input

    def use_plan(self, plan: Plan) -> None:
        """The plan of the batch-schedule phase the next ``fit`` trains (its steps per
        epoch and accumulation), for the step clock and every callback with a plan."""
        for callback in self.ordered:
            if hasattr(callback, "plan"):
                callback.plan = plan


def callbacks(config: TrainConfig, plan: Plan, run_dir: Path, state: RunState, eval_data,
              started: float | None = None) -> RunCallbacks:
    """In the order they must run: the step clock, which the others read; Horovod's
    callbacks; step checkpoints (rank 0) and the stop on a signal (every rank); the epoch's
    checkpoint (rank 0), before evaluation, so a failed evaluation loses no training;
    evaluation of ``eval_data`` (every rank); then, on rank 0, progress lines and the logs,
    which record the evaluation."""
    rank0 = distributed.is_rank0()
    clock = StepClock(plan)
    result = [clock, *distributed.callbacks(), tf.keras.callbacks.TerminateOnNaN()]
    steps = None
    if rank0:
        steps = StepCheckpoints(run_dir, state, clock, config.job.keep_checkpoints,
                                config.job.checkpoint_every_steps)
        result.append(steps)
    stop = StopOnSignal(clock, steps.save_now if steps else None,
                        config.job.signal_check_seconds)
    result.append(stop)
    if rank0:
        result.append(EpochCheckpoint(run_dir, state, clock, config.job.keep_checkpoints,
                                      stop))
    evaluation = Evaluate(eval_data, plan, config.job.progress_every_seconds, stop,
                          config.evaluation.target_accuracy, started)
    wait = InputWait()
    result += [evaluation, wait]
    if rank0:
        result += [
            Progress(clock, config.job.progress_every_steps, config.job.progress_every_seconds,
                     wait),
            tf.keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=True),
            EpochTensorBoard(run_dir / "tensorboard"),
            Diagnostics(run_dir / "tensorboard" / "lars", clock, config.job.log_every_steps),
        ]
    return RunCallbacks(result, stop, evaluation, wait)
