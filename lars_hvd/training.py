"""The story of a training run: plan -> run directory -> model -> restore -> fit -> report.

``lars_hvd.train.main`` calls ``run()`` once Horovod is initialized. Static and elastic runs
share ``prepare()`` and differ only in how they call ``fit()``. Every Horovod call goes
through ``lars_hvd.distributed``; rank 0 alone writes files.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from lars_hvd import distributed, elastic, models
from lars_hvd.callbacks import Evaluate, callbacks, say
from lars_hvd.checkpoints import RunState, restore
from lars_hvd.config import TrainConfig
from lars_hvd.data.pipeline import check as check_data
from lars_hvd.data.pipeline import data_errors, make_datasets
from lars_hvd.errors import TrainingDiverged, disk_full, disk_full_error
from lars_hvd.evaluation import evaluate, recompute_bn_statistics
from lars_hvd.files import atomic_write_text
from lars_hvd.optimizers import (
    PRECISION_POLICIES,
    apply_sgd_exclusions,
    build_optimizer,
    build_optimizer_state,
    describe_manifest,
    loss_function,
)
from lars_hvd.plan import Plan, resolve
from lars_hvd.report import (
    Summary,
    check_replicas,
    peak_memory_mb,
    print_placement,
    report_bad_records,
)
from lars_hvd.run_dir import checkpoint_dir, prepare_run_dir


@dataclass
class Run:
    """What every run has before its first step."""

    config: TrainConfig
    plan: Plan
    run_dir: Path
    model: tf.keras.Model
    state: RunState
    initial_epoch: int


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


def configure_tensorflow(config: TrainConfig) -> None:
    if config.run.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.run.xla:
        # Auto-clustering compiles what XLA can and leaves Horovod's allreduce outside (a
        # whole-step jit_compile=True cannot hold Horovod's ops). On CPUs it needs
        # --tf_xla_cpu_global_jit in TF_XLA_FLAGS, which lars_hvd.train sets.
        tf.config.optimizer.set_jit("autoclustering")
    tf.keras.mixed_precision.set_global_policy(PRECISION_POLICIES[config.run.precision])
    tf.keras.utils.set_random_seed(config.run.seed)


def prepare(config: TrainConfig) -> Run:
    """The plan, the run directory, the compiled model and, with --resume, its state."""
    plan = resolve(config, distributed.size())
    check_data(config, plan)  # the same on every rank, before any collective
    is_elastic = config.run.elastic
    if is_elastic:
        # Horovod (elastic): no collective before the elastic loop, which a worker that
        # joins later enters directly.
        run_dir = elastic.run_dir(config, plan)
    else:
        run_dir = Path(distributed.rank0_decides(lambda: str(prepare_run_dir(config, plan))))
    if distributed.is_rank0():
        print(plan.describe(), flush=True)
    if not is_elastic:
        print_placement()
    configure_tensorflow(config)
    model = models.build(config.model.model, plan.input_shape, plan.num_classes,
                         bn_momentum=config.model.bn_momentum)
    compile_model(model, config, plan)
    state, initial_epoch = RunState.new(), 0
    if config.run.resume:
        # Horovod (elastic): rank 0 restores; the elastic state sync sends it to the others.
        initial_epoch = restore(run_dir, model, model.optimizer, state, plan,
                                broadcast=not is_elastic)
    else:
        build_optimizer_state(model.optimizer, model.trainable_variables)
        if not is_elastic:
            # Horovod: every rank starts from rank 0's initial weights (elastic: the sync).
            distributed.broadcast_model(model)
    if distributed.is_rank0() and (manifest := describe_manifest(model.optimizer, model)):
        print(manifest, flush=True)
    return Run(config, plan, run_dir, model, state, initial_epoch)


def fit(run: Run, plan: Plan, initial_epoch: int, extra_callbacks=()) -> Summary:
    """Trains ``run.model`` from ``initial_epoch`` to the end of ``plan``, then evaluates.

    A run resumed mid-epoch (from a step checkpoint) first finishes that epoch (one
    ``model.fit`` over its remaining micro-batches, the data stream less those taken), then
    goes on epoch by epoch. Raises ``Preempted`` when a signal stopped it."""
    model, config, run_dir = run.model, run.config, run.run_dir
    acc = plan.accumulation_steps
    done = int(model.optimizer.iterations) // acc - initial_epoch * plan.steps_per_epoch
    segments = [(initial_epoch, plan.epochs, 0)]
    if done > 0:  # resumed mid-epoch: that epoch's rest, then the others
        segments = [(initial_epoch, initial_epoch + 1, done),
                    (initial_epoch + 1, plan.epochs, 0)][: 1 + (initial_epoch + 1 < plan.epochs)]
    verbose = 0
    if distributed.is_rank0():
        # A progress bar on a terminal; in a log file, one line per epoch from Keras and the
        # progress lines of callbacks.Progress.
        verbose = 1 if sys.stdout.isatty() else 2
    first = make_datasets(config, plan, distributed.rank(), initial_epoch, done * acc)
    evaluation = Evaluate(first.eval, plan, config.run.progress_every_seconds)
    every, stop = callbacks(config, plan, run_dir, run.state, evaluation,
                            {initial_epoch: done})
    start = time.perf_counter()
    steps_before = int(model.optimizer.iterations) // acc
    losses, counters = [], []
    try:
        for begin, end, skip in segments:
            data = first if begin == initial_epoch else make_datasets(
                config, plan, distributed.rank(), begin)
            counters.append(data.bad_records)
            with data_errors():
                history = model.fit(
                    data.train, epochs=end, initial_epoch=begin, verbose=verbose,
                    steps_per_epoch=(plan.steps_per_epoch - skip) * acc,
                    callbacks=every + list(extra_callbacks))
            losses += history.history.get("loss", [])
            if stop.stopped or model.stop_training:
                break
    except OSError as err:  # the logs of rank 0 (checkpoints name their own folder)
        if not disk_full(err):
            raise
        raise disk_full_error(run_dir, "the run's logs", "continue with --resume") from None
    if stop.stopped:
        raise stop.stopped
    wall = time.perf_counter() - start
    if losses and not math.isfinite(losses[-1]):
        raise TrainingDiverged(
            f"training stopped: the loss became {losses[-1]} in epoch {len(losses)}. Nothing "
            f"of that epoch was saved; the checkpoints of the epochs before it are in "
            f"{checkpoint_dir(run_dir)}. Lower --learning-rate or lengthen --warmup-epochs.")
    steps = int(model.optimizer.iterations) // acc - steps_before
    result = evaluation.last  # the last epoch is always evaluated
    recompute = config.evaluation.bn_recompute_examples
    if recompute:
        recompute_bn_statistics(model, data.train, recompute, plan.per_worker_batch)
    if first.eval is not None and (recompute or result is None):
        with data_errors():
            result = evaluate(model, first.eval, batch_size=plan.eval_batch_size,
                              every_seconds=config.run.progress_every_seconds,
                              say=lambda text: say(f"final {text}"))
    report_bad_records(counters, config.data.max_bad_records)
    peak = peak_memory_mb()
    if plan.world_size > 1:
        check_replicas(model)
    return Summary(
        test_accuracy=result.accuracy if result else None,
        test_examples=result.examples if result else 0,
        test_set_examples=plan.eval_set_examples,
        images_per_second=steps * plan.global_batch_size / wall if wall > 0 else 0.0,
        wall_seconds=wall, global_batch_size=plan.global_batch_size,
        world_size=plan.world_size, epochs_run=len(losses), run_dir=str(run_dir),
        peak_memory_mb=peak)


def run_static(run: Run, extra_callbacks=()) -> Summary:
    return fit(run, run.plan, run.initial_epoch, extra_callbacks)


def run_elastic(run: Run, extra_callbacks=()) -> Summary:
    """``fit`` under elastic Horovod: after every change of the worker set, the plan is
    re-derived for the new count, the optimizer re-wrapped for the new accumulation, the
    data re-sharded, and training goes on from the last committed epoch with the survivors'
    (or, for a newcomer, rank 0's) state."""
    # Horovod: the state that is rolled back on a failure and sent to joining workers.
    state = distributed.elastic_state(run.model, epoch=run.initial_epoch)

    def train(state):
        elastic.check_run_dir(run.run_dir)
        plan = resolve(run.config, distributed.size())
        # Horovod: backward_passes_per_step is fixed when the optimizer is wrapped, so every
        # new worker count gets a newly wrapped optimizer (this also drops any half-summed
        # micro-batch gradients of an epoch that a lost worker cut short).
        elastic.recompile_for_plan(run.model, plan, state,
                                   lambda p: compile_model(run.model, run.config, p))
        print_placement()
        if distributed.is_rank0():
            print(f"elastic: {plan.world_size} worker(s) from epoch {state.epoch + 1}: "
                  f"{plan.describe().splitlines()[1].split(maxsplit=2)[2]}", flush=True)
        return fit(run, plan, state.epoch, [*extra_callbacks, elastic.Commit(state)])

    # Horovod: re-run train() after every reset, with the state synchronized.
    return distributed.elastic_run(train)(state)


def run(config: TrainConfig, extra_callbacks=()) -> Summary:
    """One training run on this process's Horovod world (``distributed.init`` has run)."""
    prepared = prepare(config)
    summary = (run_elastic if config.run.elastic else run_static)(prepared, extra_callbacks)
    if distributed.is_rank0():  # (after elastic resets, rank 0 may be another process)
        print(summary.line(), flush=True)
        atomic_write_text(Path(prepared.run_dir) / "summary.json",
                          json.dumps(summary.__dict__, indent=2))
    return summary
