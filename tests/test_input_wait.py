"""The share of step time spent waiting for input, measured in a real ``model.fit``: a slow
pipeline beside a fast model is input-bound, a prefetched one beside a slow model is not."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf

from lars_hvd.run import input_wait
from lars_hvd.run.report import Summary

pytestmark = pytest.mark.core


def fit_share(batch_seconds: float, step_seconds: float, steps: int = 12) -> float:
    x = np.zeros((4, 8), np.float32)
    y = np.zeros((4,), np.int32)

    def slow_batch(_):
        def sleep():
            time.sleep(batch_seconds)
            return np.float32(0)
        delay = tf.numpy_function(sleep, [], tf.float32)
        return x + delay, y

    data = tf.data.Dataset.range(10**6).map(slow_batch).prefetch(1)
    inputs = tf.keras.Input((8,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss=tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))

    class SlowStep(tf.keras.callbacks.Callback):  # a model step's time, inside the step
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(step_seconds)

    wait = input_wait.InputWait()
    # (the step ends after SlowStep: the meter comes last, as in lars_hvd.run.callbacks)
    model.fit(input_wait.stamp(data), steps_per_epoch=steps, epochs=1, verbose=0,
              callbacks=[SlowStep(), wait])
    return wait.share()


def test_a_slow_pipeline_is_measured_input_bound():
    share = fit_share(batch_seconds=0.08, step_seconds=0.01)
    assert share > 0.6, share
    assert "(input-bound)" in input_wait.describe(share)


def test_a_prefetched_pipeline_beside_a_slow_step_waits_little():
    # (a step long beside what a busy machine adds to taking a ready batch: the tests run
    # two at a time, at a lower priority than the Slurm tests beside them; at 0.25 s a step,
    # 0.14 was seen there)
    share = fit_share(batch_seconds=0.0, step_seconds=0.5, steps=8)
    assert share < 0.1, share
    assert "(input-bound)" not in input_wait.describe(share)


def test_the_summary_line_says_the_wait():
    line = Summary(0.9, 100.0, 1.0, 64, 1, 1, "runs/x", input_wait_share=0.34).line()
    assert line.endswith("| input wait 34% (input-bound)")
    assert Summary(0.9, 100.0, 1.0, 64, 1, 1, "runs/x").line().endswith("| input wait n/a")
