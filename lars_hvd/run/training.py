"""The story of a training run: plan -> run directory -> model -> start -> fit -> summary.

``lars_hvd.train.main`` calls ``run()`` once Horovod is initialized. A static run and an
elastic one share every step but two: how the run directory is agreed on and how the ranks
come to hold the same state (a broadcast, or elastic Horovod's sync), and an elastic run
calls ``fit()`` again after every change of the worker set. Every Horovod call goes through
``lars_hvd.distributed``; rank 0 alone writes files.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from lars_hvd import distributed, models
from lars_hvd.data.pipeline import check as check_data
from lars_hvd.data.pipeline import data_errors, make_datasets
from lars_hvd.errors import TrainingDiverged, disk_full, disk_full_error
from lars_hvd.files import atomic_write_text
from lars_hvd.planning.config import TrainConfig
from lars_hvd.planning.plan import Plan, resolve
from lars_hvd.run import elastic, input_wait, tf_setup
from lars_hvd.run.callbacks import RunCallbacks, callbacks, say
from lars_hvd.run.checkpoints import RunState, restore
from lars_hvd.run.evaluation import EvalResult, evaluate, recompute_bn_statistics
from lars_hvd.run.layout import checkpoint_dir
from lars_hvd.run.optimizer_factory import (
    apply_sgd_exclusions,
    build_optimizer,
    build_optimizer_state,
    describe_manifest,
    loss_function,
)
from lars_hvd.run.report import (
    Summary,
    check_replicas,
    peak_memory_mb,
    print_placement,
    report_bad_records,
)
from lars_hvd.run.run_dir import prepare_run_dir


@dataclass
class Training:
    """What a run holds from its start to its end. (The plan and the epoch to start from
    are ``fit()``'s arguments: elastic training re-derives them after every change.)"""

    config: TrainConfig
    run_dir: Path
    model: tf.keras.Model
    state: RunState
    compiled_phase: int = 0  # the batch-schedule phase the optimizer is wrapped for
    started: float | None = None  # perf_counter at the first fit: time to target counts from it


@dataclass(frozen=True)
class Segment:
    """One ``model.fit`` call: epochs [begin, end), the first one less ``skip`` steps."""

    begin: int
    end: int
    skip: int = 0


def run(config: TrainConfig, extra_callbacks=()) -> Summary:
    """One training run on this process's Horovod world (``distributed.init`` has run)."""
    train_on = on_elastic_workers if config.job.elastic else on_fixed_workers
    summary = train_on(config, extra_callbacks)
    if distributed.is_rank0():  # (after elastic resets, rank 0 may be another process)
        print(summary.line(), flush=True)
        atomic_write_text(Path(summary.run_dir) / "summary.json",
                          json.dumps(summary.__dict__, indent=2))
    return summary


def on_fixed_workers(config: TrainConfig, extra_callbacks=()) -> Summary:
    plan = plan_for_world(config)
    # Horovod: rank 0 makes (or, with --resume, checks) the run directory; every rank
    # learns it, or rank 0's refusal.
    run_dir = Path(distributed.rank0_decides(lambda: str(prepare_run_dir(config, plan))))
    print_plan(plan)
    print_placement()
    training = build(config, plan, run_dir)
    epoch = start(training, plan, broadcast=True)
    return fit(training, plan, epoch, extra_callbacks)


def on_elastic_workers(config: TrainConfig, extra_callbacks=()) -> Summary:
    """``fit`` under elastic Horovod: after every change of the worker set, the plan is
    re-derived for the new count, the optimizer re-wrapped for the new accumulation, the
    data re-sharded, and training goes on from the last committed epoch with the survivors'
    (or, for a newcomer, rank 0's) state."""
    plan = plan_for_world(config)
    # Horovod (elastic): no collective before the elastic loop, which a worker that joins
    # later enters directly.
    run_dir = elastic.run_dir(config, plan)
    print_plan(plan)
    training = build(config, plan, run_dir)
    # Horovod (elastic): rank 0 restores; the elastic state sync sends it to the others.
    epoch = start(training, plan, broadcast=False)
    # Horovod: the state that is rolled back on a failure and sent to joining workers.
    state = distributed.elastic_state(training.model, epoch=epoch)

    def fit_from_commit(state):
        elastic.check_run_dir(run_dir)
        plan = resolve(config, distributed.size())
        # Horovod: backward_passes_per_step is fixed when the optimizer is wrapped, so every
        # new worker count gets a newly wrapped optimizer (this also drops any half-summed
        # micro-batch gradients of an epoch that a lost worker cut short).
        phase_plan = plan.for_epoch(int(state.epoch))
        elastic.recompile_for_plan(training.model, phase_plan, state,
                                   lambda p: compile_model(training.model, config, p))
        training.compiled_phase = phase_plan.phase
        print_placement()
        if distributed.is_rank0():
            print(f"elastic: {plan.world_size} worker(s) from epoch {state.epoch + 1}: "
                  f"{phase_plan.batch_text()}", flush=True)
        return fit(training, plan, state.epoch, [*extra_callbacks, elastic.Commit(state)])

    # Horovod: re-run fit_from_commit() after every reset, with the state synchronized.
    return distributed.elastic_run(fit_from_commit)(state)


def plan_for_world(config: TrainConfig) -> Plan:
    """The plan for this Horovod world, its data checked (on every rank alike, before any
    collective, so a refusal is every rank's)."""
    plan = resolve(config, distributed.size())
    check_data(config, plan)
    return plan


def print_plan(plan: Plan) -> None:
    if distributed.is_rank0():
        print(plan.describe(), flush=True)
        if note := distributed.allreduce_note():
            print(note, flush=True)


def compile_model(model: tf.keras.Model, config: TrainConfig, plan: Plan) -> None:
    """Compiles ``model`` with the run's optimizer, wrapped by Horovod for ``plan``."""
    optimizer = distributed.distributed_optimizer(
        build_optimizer(config, plan),
        # Horovod: accumulate micro-batches locally, then one allreduce per optimizer step.
        backward_passes_per_step=plan.accumulation_steps,
        fp16_allreduce=config.job.fp16_allreduce,
    )
    apply_sgd_exclusions(optimizer, model, config)
    # (the metric as an object, its variables made here: from the string "accuracy" Keras
    # makes them inside the first step, and a tf.function that creates variables is traced
    # twice: seconds more before every run's first step, on every rank)
    model.compile(optimizer=optimizer,
                  loss=loss_function(plan.num_classes, config.model.label_smoothing),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def build(config: TrainConfig, plan: Plan, run_dir: Path) -> Training:
    """TensorFlow set for the run, the model built and compiled, a fresh run state."""
    tf_setup.configure(config)
    # (the ImageNet reader hands uint8 pixels, which the model normalizes: lars_hvd.models.inputs)
    model = models.build(config.model.model, plan.input_shape, plan.num_classes,
                         bn_momentum=config.model.bn_momentum,
                         pixels="uint8" if config.data.dataset == "imagenet" else "float32")
    # Horovod: --bn-group N > 1 normalizes over N workers' micro-batches (the same weights).
    model = distributed.synchronize_batch_norm(model, config.model.bn_group)
    compile_model(model, config, plan)
    return Training(config, run_dir, model, RunState.new())


def start(training: Training, plan: Plan, *, broadcast: bool) -> int:
    """The state of step 0, or with --resume the newest checkpoint's; returns the epoch to
    start from. ``broadcast``: rank 0's state is sent to every rank here (an elastic run
    syncs its state itself)."""
    model = training.model
    if training.config.job.resume:
        epoch = restore(training.run_dir, model, model.optimizer, training.state, plan,
                        broadcast=broadcast)
    else:
        build_optimizer_state(model.optimizer, model.trainable_variables)
        epoch = 0
        if broadcast:
            # Horovod: every rank starts from rank 0's initial weights.
            distributed.broadcast_model(model)
    if distributed.is_rank0() and (manifest := describe_manifest(model.optimizer, model)):
        print(manifest, flush=True)
    return epoch


def segments(plan: Plan, initial_epoch: int, step: int) -> list[Segment]:
    """The ``model.fit`` calls from optimizer step ``step`` (in ``initial_epoch``) to the
    end: a run resumed mid-epoch (a step checkpoint) first finishes that epoch, the data
    stream less the steps taken, then goes on epoch by epoch; a batch schedule's phases are
    segments of their own (each its own batch, accumulation and wrapped optimizer)."""
    done = step - plan.step_at_epoch(initial_epoch)
    result, begin = [], initial_epoch
    if done > 0:
        result.append(Segment(initial_epoch, initial_epoch + 1, done))
        begin += 1
    while begin < plan.epochs:
        phase_plan = plan.for_epoch(begin)
        end = plan.phases[phase_plan.phase].last_epoch if plan.phases else plan.epochs
        result.append(Segment(begin, end))
        begin = end
    return result


def fit(training: Training, plan: Plan, initial_epoch: int, extra_callbacks=()) -> Summary:
    """Trains ``training.model`` from ``initial_epoch`` to the end of ``plan``, then evaluates.
    Raises ``Preempted`` when a signal stopped it, ``TrainingDiverged`` when the loss did."""
    model, config = training.model, training.config
    compiled = plan.for_phase(training.compiled_phase)
    steps_before = compiled.optimizer_step(model.optimizer.iterations)
    todo = segments(plan, initial_epoch, steps_before)
    phase_plan = plan.for_epoch(initial_epoch)
    first = make_datasets(config, phase_plan, distributed.rank(), initial_epoch,
                          phase_plan.iterations_at(todo[0].skip))
    first.train = input_wait.stamp(first.train)
    if training.started is None:
        training.started = time.perf_counter()
    run_callbacks = callbacks(config, phase_plan, training.run_dir, training.state, first.eval,
                              training.started)
    start_time = time.perf_counter()
    losses, counters, train_data, examples = fit_segments(
        training, plan, todo, first, run_callbacks, list(extra_callbacks))
    if run_callbacks.stop.stopped:
        raise run_callbacks.stop.stopped
    wall = time.perf_counter() - start_time
    check_finite(losses, training.run_dir)
    # (BN statistics are recomputed from the last trained phase's batches)
    last_trained = plan.for_epoch(initial_epoch + max(len(losses), 1) - 1)
    result = final_evaluation(training, last_trained, run_callbacks.evaluation.last, first.eval,
                              train_data)
    report_bad_records(counters, config.data.max_bad_records)
    peak = peak_memory_mb()
    # Horovod: every rank's share; the summary reports the largest.
    waits = [w for w in distributed.allgather_object(run_callbacks.wait.share())
             if w is not None]
    if plan.world_size > 1:
        check_replicas(model)
    reached = run_callbacks.evaluation.reached
    return Summary(
        test_accuracy=result.accuracy if result else None,
        test_examples=result.examples if result else 0,
        test_set_examples=plan.eval_set_examples,
        images_per_second=examples / wall if wall > 0 else 0.0,
        wall_seconds=wall, global_batch_size=plan.global_batch_size,
        world_size=plan.world_size, epochs_run=len(losses), run_dir=str(training.run_dir),
        peak_memory_mb=peak, target_accuracy=config.evaluation.target_accuracy,
        target_epoch=reached.epoch if reached else None,
        time_to_target_seconds=reached.seconds if reached else None,
        batch_schedule=[p.global_batch_size for p in plan.phases] or None,
        input_wait_share=max(waits) if waits else None)


def fit_segments(training: Training, plan: Plan, todo: list[Segment], first,
                 run_callbacks: RunCallbacks, extra: list):
    """``model.fit`` over each segment (stopping early when a callback stops training), the
    optimizer re-wrapped where a batch schedule's phase begins. Returns the epochs' losses,
    each segment's bad-record counter, the last training dataset and the examples trained."""
    model = training.model
    losses, counters, data, examples = [], [], first, 0
    try:
        for segment in todo:
            phase_plan = plan.for_epoch(segment.begin)
            if phase_plan.phase != training.compiled_phase:
                switch_phase(training, plan, phase_plan)
            run_callbacks.use_plan(phase_plan)
            if segment is not todo[0]:
                data = make_datasets(training.config, phase_plan, distributed.rank(), segment.begin)
                data.train = input_wait.stamp(data.train)
            counters.append(data.bad_records)
            before = phase_plan.optimizer_step(model.optimizer.iterations)
            with data_errors():
                history = model.fit(
                    data.train, epochs=segment.end, initial_epoch=segment.begin,
                    verbose=0,  # (callbacks.Progress prints)
                    callbacks=run_callbacks.ordered + extra,
                    steps_per_epoch=phase_plan.iterations_at(
                        phase_plan.steps_per_epoch - segment.skip))
            examples += (phase_plan.optimizer_step(model.optimizer.iterations) - before) \
                * phase_plan.global_batch_size
            losses += history.history.get("loss", [])
            if model.stop_training:  # (a signal, TerminateOnNaN, or the target reached)
                break
    except OSError as err:  # the logs of rank 0 (checkpoints name their own folder)
        if not disk_full(err):
            raise
        raise disk_full_error(training.run_dir, "the run's logs",
                              "continue with --resume") from None
    return losses, counters, data.train, examples


def switch_phase(training: Training, plan: Plan, phase_plan: Plan) -> None:
    """The optimizer re-wrapped for the batch-schedule phase ``phase_plan``: its accumulation
    (Horovod fixes backward_passes_per_step at wrapping) and its reading of the LR schedule,
    the slots carried over, Keras's iterations re-derived from the step."""
    model = training.model
    step = plan.for_phase(training.compiled_phase).optimizer_step(model.optimizer.iterations)
    elastic.carry_optimizer(model, lambda: compile_model(model, training.config, phase_plan))
    model.optimizer.iterations.assign(phase_plan.iterations_at(step))
    training.compiled_phase = phase_plan.phase
    say(f"epoch {plan.phases[phase_plan.phase].first_epoch}: {phase_plan.batch_text()}, peak LR "
        f"{phase_plan.peak_learning_rate:g}")


def check_finite(losses: list[float], run_dir: Path) -> None:
    if losses and not math.isfinite(losses[-1]):
        raise TrainingDiverged(
            f"training stopped: the loss became {losses[-1]} in epoch {len(losses)}. Nothing "
            f"of that epoch was saved; the checkpoints of the epochs before it are in "
            f"{checkpoint_dir(run_dir)}. Lower --learning-rate or lengthen --warmup-epochs.")


def final_evaluation(training: Training, plan: Plan, last: EvalResult | None, eval_data,
                     train_data) -> EvalResult | None:
    """What the summary reports: the last epoch's evaluation (the last epoch is always
    evaluated), or a new one after batch-norm statistics are recomputed."""
    recompute = training.config.evaluation.bn_recompute_examples
    if recompute:
        recompute_bn_statistics(training.model, train_data, recompute, plan.per_worker_batch)
    if eval_data is not None and (recompute or last is None):
        with data_errors():
            last = evaluate(training.model, eval_data, batch_size=plan.eval_batch_size,
                            every_seconds=training.config.job.progress_every_seconds,
                            say=lambda text: say(f"final {text}"), announce=True)
    return last
