"""Batch norm over a group of workers: run on every rank by ``horovodrun -np W python -m
pytest <this file>`` with ``LARS_HVD_BN_GROUP`` = N (tests/test_sync_bn.py: W = 2 and N = 2
under Gloo and MPI, W = 4 and N = 2 under Gloo).

The invariant: one step with batch norm synchronized over N workers of b examples each is
one step of one worker on those N x b examples -- the same batch statistics, the same
updated weights -- and with several groups, the gradient is the mean over groups of each
group's gradient.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
import tensorflow as tf

from lars_hvd import distributed

GROUP = int(os.environ["LARS_HVD_BN_GROUP"])
distributed.init(bn_group=GROUP)

from lars_reference import relative_error  # noqa: E402

from lars_hvd.optim.lars import LARS  # noqa: E402

RANK, SIZE = distributed.rank(), distributed.size()
BATCH = 8  # per worker
LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
LARS_KW = dict(learning_rate=1.0, momentum=0.9, weight_decay_rate=1e-4, trust_coefficient=0.01)
# Stated tolerance: float32 sums taken in another order (per worker, then allreduced).
TOLERANCE = 1e-5


def make_model(fused=None) -> tf.keras.Model:
    """A conv layer and a dense layer, each followed by batch norm (momentum 0: after one
    step the moving statistics are the step's batch statistics; no bias before it, whose
    gradient is zero but for rounding)."""
    tf.keras.utils.set_random_seed(0)
    bn = dict(momentum=0.0, fused=fused)
    inputs = tf.keras.Input((6, 6, 2))
    x = tf.keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = tf.keras.layers.BatchNormalization(name="conv_bn", **bn)(x)
    x = tf.keras.layers.Activation("relu")(x)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(5, use_bias=False, name="dense")(x)
    x = tf.keras.layers.BatchNormalization(name="dense_bn", **bn)(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="logits")(x))


def rank_data(r: int):
    rng = np.random.default_rng(100 + r)
    # (shifted per rank: the groups' statistics differ, so a wrong group is seen)
    return (rng.normal(loc=r, size=(BATCH, 6, 6, 2)).astype(np.float32),
            rng.integers(0, 3, size=BATCH))


def group_data(first: int):
    xs, ys = zip(*(rank_data(r) for r in range(first, first + GROUP)), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def statistics(model) -> list[np.ndarray]:
    return [v.numpy() for v in model.variables if "moving_" in v.name]


def one_worker_reference(groups_of: list[int]):
    """One process, no Horovod: each group's N x b examples through batch norm as one batch
    (Keras's non-fused kernel, which synchronized BN is), the gradients averaged over the
    groups and applied once. Returns (weights, this rank's group's statistics)."""
    gradients, mine = [], None
    for first in groups_of:
        model = make_model(fused=False)
        x, y = group_data(first)
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x, training=True))
        gradients.append(tape.gradient(loss, model.trainable_variables))
        if first == RANK // GROUP * GROUP:
            mine = model
    mean = [tf.add_n(list(g)) / len(g) for g in zip(*gradients, strict=True)]
    LARS(**LARS_KW).apply_gradients(zip(mean, mine.trainable_variables, strict=True))
    return [v.numpy() for v in mine.trainable_variables], statistics(mine)


@functools.cache
def synchronized_step():
    """One training step of the run's path: the model with its batch norm grouped, LARS
    wrapped by Horovod, every rank on its own b examples (taken once, read by two tests)."""
    model = distributed.synchronize_batch_norm(make_model(), GROUP)
    model.compile(optimizer=distributed.distributed_optimizer(LARS(**LARS_KW)), loss=LOSS)
    x, y = rank_data(RANK)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return model


def test_world_and_group():
    assert SIZE in (2, 4) and SIZE % GROUP == 0 and GROUP > 1, (SIZE, GROUP)


def test_the_process_set_of_each_group_size():
    assert distributed.bn_process_set(1) is None
    assert distributed.bn_process_set(SIZE).size() == SIZE  # the world: Horovod's global set
    assert distributed.bn_process_set(3) is None  # does not divide 2 or 4 (the plan refuses)


def test_batch_norm_layers_are_synchronized_and_keep_their_weights():
    plain = make_model()
    synced = distributed.synchronize_batch_norm(plain, GROUP)
    kinds = [type(layer).__name__ for layer in synced.layers if "bn" in layer.name]
    assert kinds == ["GroupBatchNormalization"] * 2
    assert [layer.name for layer in synced.layers] == [layer.name for layer in plain.layers]
    for a, b in zip(synced.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_batch_norm_inside_a_nested_model_is_refused():
    inner = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.BatchNormalization()],
                                name="inner")
    outer = tf.keras.Sequential([tf.keras.Input((3,)), inner], name="outer")
    with pytest.raises(ValueError, match=r"not \['batch_normalization\S*'\] inside a nested"):
        distributed.synchronize_batch_norm(outer, GROUP)


def test_group_step_equals_one_worker_on_the_group_batch():
    model = synchronized_step()
    weights, stats = one_worker_reference(list(range(0, SIZE, GROUP)))
    for name, actual, expected in zip(
            ["statistics"] * 4 + ["weights"] * len(weights),
            statistics(model) + [v.numpy() for v in model.trainable_variables],
            stats + weights, strict=True):
        assert relative_error(actual, expected) < TOLERANCE, name
    # The check can fail: batch norm over this worker's b examples alone gives other
    # statistics and, through them, other weights.
    alone = make_model(fused=False)
    alone(rank_data(RANK)[0], training=True)
    assert max(relative_error(a, b) for a, b in zip(statistics(alone), stats,
                                                     strict=True)) > 1e-2


def test_every_rank_ends_with_the_same_weights_and_its_group_statistics():
    model = synchronized_step()
    rows = distributed.allgather_object([v.numpy() for v in model.trainable_variables])
    for row in rows[1:]:
        for a, b in zip(row, rows[0], strict=True):
            np.testing.assert_array_equal(a, b)
    stats = distributed.allgather_object(statistics(model))
    same_group = [r for r in range(SIZE) if r // GROUP == RANK // GROUP]
    other = [r for r in range(SIZE) if r // GROUP != RANK // GROUP]
    for r in same_group:
        for a, b in zip(stats[r], stats[RANK], strict=True):
            np.testing.assert_allclose(a, b, rtol=TOLERANCE, atol=1e-7)
    for r in other:  # (another group saw other examples)
        assert max(relative_error(a, b) for a, b in zip(stats[r], stats[RANK],
                                                         strict=True)) > 1e-2
