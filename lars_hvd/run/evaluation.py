"""Evaluation over all workers, one path for every data set, and precise batch norm."""

from __future__ import annotations

import math
import re
import time
import weakref
from dataclasses import dataclass

import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.errors import UsageError


@dataclass(frozen=True)
class EvalResult:
    accuracy: float  # top-1, over every example evaluated on every rank
    loss: float  # mean cross-entropy (no label smoothing)
    examples: int  # evaluated, over all ranks
    seconds: float


# The traced counting step of each model evaluated, kept while the model lives: traced once,
# not at every epoch's evaluation (for a small model, the trace is half of an evaluation).
_COUNTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _counts(model):
    """``counts(x, y)`` -> (correct predictions, summed cross-entropy) of a batch, traced."""
    if model not in _COUNTS:
        traced = weakref.ref(model)  # (a strong one would keep the model, and this, alive)

        @tf.function
        def counts(x, y):
            logits = tf.cast(traced()(x, training=False), tf.float32)
            labels = tf.cast(tf.reshape(y, [-1]), tf.int32)
            correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
            losses = tf.keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                     from_logits=True)
            return (tf.reduce_sum(tf.cast(correct, tf.float64)),
                    tf.reduce_sum(tf.cast(losses, tf.float64)))

        _COUNTS[model] = counts
    return _COUNTS[model]


def evaluate(model, dataset: tf.data.Dataset | None, *, batch_size: int,
             every_seconds: float = 60.0, say=None, announce: bool = False
             ) -> EvalResult | None:
    """Top-1 accuracy and loss over the whole evaluation set, counted exactly: each rank
    sums correct predictions, losses and examples of its part (the parts may differ in
    size), then the sums are added over ranks. ``say(text)``, if given, reports progress at
    least every ``every_seconds`` and, for an evaluation that took that long, its end (with
    ``announce``: its start and end always). None without a dataset.

    Raises UsageError if TensorFlow runs out of memory (a batch too large to evaluate).
    """
    if dataset is None:
        return None
    counts = _counts(model)
    start = last = time.monotonic()
    if say and announce:
        say("evaluation started")
    correct = loss = 0.0
    examples = 0
    try:
        for x, y in dataset:
            right, summed = counts(x, y)
            correct, loss = correct + float(right), loss + float(summed)
            examples += int(x.shape[0])
            if say and time.monotonic() - last >= every_seconds:
                last = time.monotonic()
                say(f"evaluation: {examples} examples on this worker, "
                    f"{examples / (last - start):.0f} images/s")
    except tf.errors.ResourceExhaustedError as err:
        lines = (err.message or "out of memory").strip().splitlines()
        # (the allocation that failed; a graph's error begins with "Graph execution error:")
        first = next((line.strip() for line in lines if re.search(r"OOM|[Aa]llocat", line)),
                     lines[0])
        first = re.sub(r"\s*\[Op:.*$", "", re.sub(r"\{\{.*?\}\}\s*", "", first))[:200]
        raise UsageError(
            f"evaluation ran out of memory at --eval-batch-size {batch_size} per worker "
            f"({first}); lower --eval-batch-size (by default it is the per-worker training "
            f"batch) and continue with --resume: the epoch's checkpoint was written first",
            every_rank=False) from None
    # Horovod: the whole set's counts are the sums of the ranks' counts.
    correct, loss, examples = (float(v) for v in distributed.allreduce_sum(
        tf.constant([correct, loss, examples], tf.float64)).numpy())
    seconds = time.monotonic() - start
    if not examples:
        return None
    result = EvalResult(correct / examples, loss / examples, int(examples), seconds)
    if say and (announce or seconds >= every_seconds):
        say(f"evaluation ended in {seconds:.1f} s: accuracy {result.accuracy:.4f}, loss "
            f"{result.loss:.4f} on {result.examples} examples")
    return result


def recompute_bn_statistics(model, train: tf.data.Dataset, examples: int,
                            batch_size: int) -> int:
    """Replaces every BN layer's moving mean and variance by their average over about
    ``examples`` training examples at the final weights, then averages them over ranks.

    A large-batch run takes few steps, and BN's exponential moving averages still carry the
    statistics of early, very different weights: test accuracy then collapses while
    training accuracy is fine. Recomputing them ("precise BN", Wu and Johnson 2021) removes
    that lag. Returns the number of batches used (0 without BN layers).
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
