"""How much of a training step waits for its batch: measured on every rank, not modelled.

The training dataset's last stage (``stamp``) notes the time Keras takes each batch (one
Python call a batch); ``InputWait`` takes the time each step begins (``on_train_batch_begin``,
just before Keras asks the dataset for the batch) and, when the step ends, counts the time
from the step's beginning to the batch's delivery as waiting for input. A step whose batch
was ready in tf.data's prefetch buffer waits about nothing; an input-bound run waits most of
the step. The first step of each ``fit`` is left out (it traces the training function first).
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

INPUT_BOUND = 0.10  # a run that waits more than this share of its step time is input-bound
_delivered = [0.0]  # when the last batch was taken (time.time()), in this process


def delivered() -> float:
    return _delivered[0]


def _note_delivery() -> np.float64:
    _delivered[0] = time.time()
    return np.float64(_delivered[0])


def stamp(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``dataset`` whose every element, when Keras takes it, notes the time (``delivered``)."""
    def handed_over(*element):
        # (Python's clock, not tf.timestamp, which --deterministic's op determinism refuses)
        noted = tf.numpy_function(_note_delivery, [], tf.float64, stateful=True)
        with tf.control_dependencies([noted]):
            return tf.nest.map_structure(tf.identity, element)

    # (a sequential map after the prefetch: it runs when the element is asked for)
    return dataset.map(handed_over)


class InputWait(tf.keras.callbacks.Callback):
    """Sums, per rank, the step time spent waiting for input and the step time."""

    def __init__(self):
        super().__init__()
        self.waited = self.stepped = 0.0
        self._mark = (0.0, 0.0)

    def on_train_begin(self, logs=None):
        self._skip = True  # the first step traces

    def on_train_batch_begin(self, batch, logs=None):
        self._begin = time.time()

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        if self._skip:
            self._skip = False
            return
        step = now - self._begin
        self.waited += min(max(delivered() - self._begin, 0.0), step)
        self.stepped += step

    def share(self) -> float | None:
        """Of all measured step time, the share spent waiting (None: no step measured)."""
        return self.share_since((0.0, 0.0))

    def totals(self) -> tuple[float, float]:
        """(seconds waited, seconds stepped) so far: a mark for ``share_since``."""
        return self.waited, self.stepped

    def share_since(self, mark: tuple[float, float]) -> float | None:
        """The share spent waiting since ``mark`` (from ``totals``)."""
        waited, stepped = self.waited - mark[0], self.stepped - mark[1]
        return waited / stepped if stepped > 0 else None

    def interval_share(self) -> float | None:
        """The share since the last call (for progress lines)."""
        share, self._mark = self.share_since(self._mark), self.totals()
        return share


def describe(share: float | None) -> str:
    if share is None:
        return "input wait n/a"
    bound = " (input-bound)" if share > INPUT_BOUND else ""
    return f"input wait {100 * share:.0f}%{bound}"
