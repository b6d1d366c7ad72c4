"""Evaluation over all workers, one path for every data set, and precise batch norm."""

from __future__ import annotations

import math

import tensorflow as tf

from lars_hvd import distributed


def evaluate(model, dataset: tf.data.Dataset | None) -> float | None:
    """Top-1 accuracy over the whole evaluation set, counted exactly: each rank counts the
    correct predictions and examples of its part (the parts may differ in size), then the
    counts are summed over ranks. None when there is nothing to evaluate."""
    if dataset is None:
        return None
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
