"""The Keras callbacks of a training run, in the order they must run."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.checkpoints import EpochCheckpoint, RunState
from lars_hvd.config import TrainConfig
from lars_hvd.optimizer import LARS
from lars_hvd.optimizers import inner_optimizer
from lars_hvd.plan import Plan


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
