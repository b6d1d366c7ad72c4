"""The run's one count of optimizer steps, which every callback that needs the step reads.

Keras counts batches: ``batch`` restarts at every epoch (and at a resumed epoch's first
untaken step), and ``optimizer.iterations`` counts micro-batches on the device, where
reading it at every step would be a host sync on the step path. ``StepClock`` reads
``iterations`` once a ``fit`` (each batch-schedule phase re-derives it), then counts in
Python. It runs first among the callbacks, so that at every hook the others see the step
just taken.
"""

from __future__ import annotations

import tensorflow as tf

from lars_hvd.planning.plan import Plan


class StepClock(tf.keras.callbacks.Callback):
    """``step``: optimizer steps the run has taken (over every phase and every resume);
    ``stepped``: whether the last batch ended an optimizer step (not mid-accumulation);
    ``epoch``: the (0-based) epoch being trained. ``plan`` is the phase being trained
    (``RunCallbacks.use_plan`` sets it)."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan
        self.step = 0
        self.epoch = 0
        self.stepped = False
        self._micro_batches = 0  # Keras's optimizer.iterations, mirrored
        self._supports_tf_logs = True  # never makes Keras convert the logs to NumPy

    def on_train_begin(self, logs=None):
        self._micro_batches = int(self.model.optimizer.iterations)  # one read a fit
        self.step = self.plan.optimizer_step(self._micro_batches)
        self.stepped = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._micro_batches += 1
        # (accumulation complete: the step was taken)
        self.stepped = self._micro_batches % self.plan.accumulation_steps == 0
        if self.stepped:
            self.step += 1

    def step_in_epoch(self) -> int:
        """Optimizer steps taken of the current epoch (a resumed epoch's included)."""
        return self.step - self.plan.step_at_epoch(self.epoch)
