"""LARS under Horovod: run on every rank by ``horovodrun -np 2 python -m pytest <this file>``.

tests/test_distributed.py launches it with Gloo and with MPI, bounded in time. Every rank
feeds different data; the assertions are that all ranks agree bitwise and that they agree
with the NumPy reference applied to the gradient averaged over ranks.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lars_hvd import distributed

distributed.init()

from lars_reference import excluded, lars_step, relative_error  # noqa: E402

from lars_hvd.optim.lars import LARS  # noqa: E402

RANK, SIZE = distributed.rank(), distributed.size()
LARS_KW = dict(learning_rate=3.0, momentum=0.9, weight_decay_rate=1e-3, trust_coefficient=0.02,
               record_trust_ratios=True)  # its variables must broadcast across ranks too
STEPS = 4
BATCH = 32  # per rank
LOSS = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def make_model(seed: int) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(seed)
    return tf.keras.Sequential(
        [
            tf.keras.Input((6,)),
            tf.keras.layers.Dense(8, activation="tanh"),
            tf.keras.layers.Dense(3),
            tf.keras.layers.Activation("linear", dtype="float32"),
        ]
    )


def rank_data(r: int, n: int = BATCH):
    rng = np.random.default_rng(1000 + r)
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, 3, size=n)


def gathered(model: tf.keras.Model) -> np.ndarray:
    """Every rank's flattened weights, one row per rank."""
    flat = np.concatenate([w.ravel() for w in model.get_weights()])
    return np.stack(distributed.allgather_object(flat))


def reference_run(w0, batches_per_step, *, average_over_ranks=True, steps=STEPS):
    """The NumPy LARS reference, fed with the gradient averaged over ranks (and micro-batches).

    batches_per_step(step) -> list of (x, y): the batches whose gradients are averaged.
    """
    model = make_model(0)
    names = [v.name for v in model.trainable_variables]
    weights = [w.astype(np.float64) for w in w0]
    velocity = [np.zeros_like(w) for w in weights]
    for step in range(steps):
        model.set_weights([w.astype(np.float32) for w in weights])
        grads = []
        for x, y in batches_per_step(step, average_over_ranks):
            with tf.GradientTape() as tape:
                loss = LOSS(y, model(x, training=True))
            grads.append([g.numpy() for g in tape.gradient(loss, model.trainable_variables)])
        mean_grads = [np.mean(gs, axis=0) for gs in zip(*grads, strict=True)]
        for i, (name, g) in enumerate(zip(names, mean_grads, strict=True)):
            skip = excluded(name, g.shape, [], True)
            weights[i], velocity[i] = lars_step(
                weights[i], g, velocity[i], LARS_KW["learning_rate"],
                momentum=LARS_KW["momentum"], weight_decay_rate=LARS_KW["weight_decay_rate"],
                trust_coefficient=LARS_KW["trust_coefficient"], epsilon=0.0, nesterov=False,
                mode="paper", decay=not skip, adapt=not skip,
            )
    return weights


def full_batches(step, average_over_ranks):
    ranks = range(SIZE) if average_over_ranks else [RANK]
    return [rank_data(r) for r in ranks]


def train(policy="float32", backward_passes_per_step=1, batch_size=BATCH, epochs=STEPS):
    tf.keras.mixed_precision.set_global_policy(policy)
    try:
        # Process-local state differs between ranks in real runs (rank 0 alone makes its
        # loggers); variable ids must then not leak into names Horovod matches across ranks.
        _ = [tf.Variable(0.0) for _ in range(3 * RANK)]
        model = make_model(seed=RANK)  # rank-dependent on purpose
        distributed.broadcast_model(model)
        w0 = model.get_weights()
        optimizer = distributed.distributed_optimizer(
            LARS(**LARS_KW), backward_passes_per_step=backward_passes_per_step
        )
        model.compile(optimizer=optimizer, loss=LOSS)
        x, y = rank_data(RANK)
        model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0,
                  callbacks=distributed.callbacks())
        return model, w0
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_world_has_two_ranks():
    assert SIZE == 2, "launch with horovodrun -np 2"


def test_broadcast_makes_rank_dependent_weights_equal():
    model = make_model(seed=RANK)
    before = gathered(model)
    assert not np.array_equal(before[0], before[1])
    distributed.broadcast_model(model)
    after = gathered(model)
    np.testing.assert_array_equal(after[0], after[1])
    np.testing.assert_array_equal(after[0], before[0])  # rank 0's weights won


def test_fit_averages_gradients_and_matches_reference():
    model, w0 = train()
    rows = gathered(model)
    np.testing.assert_array_equal(rows[0], rows[1])  # bitwise identical on every rank
    expected = reference_run(w0, full_batches)
    for actual, ref in zip(model.get_weights(), expected, strict=True):
        assert relative_error(actual, ref) < 1e-5
    # The check can fail: this rank's own gradient alone gives other weights.
    local_only = reference_run(w0, full_batches, average_over_ranks=False)
    pairs = zip(model.get_weights(), local_only, strict=True)
    assert max(relative_error(a, r) for a, r in pairs) > 1e-3


def test_backward_passes_per_step_2_is_one_step_on_the_mean():
    model, w0 = train(backward_passes_per_step=2, batch_size=BATCH // 2, epochs=1)
    rows = gathered(model)
    np.testing.assert_array_equal(rows[0], rows[1])

    def micro_batches(step, average_over_ranks):
        out = []
        for r in range(SIZE):
            x, y = rank_data(r)
            out += [(x[: BATCH // 2], y[: BATCH // 2]), (x[BATCH // 2:], y[BATCH // 2:])]
        return out

    expected = reference_run(w0, micro_batches, steps=1)
    for actual, ref in zip(model.get_weights(), expected, strict=True):
        assert relative_error(actual, ref) < 1e-5
    assert max(relative_error(a, b) for a, b in zip(model.get_weights(), w0, strict=True)) > 1e-3


# Stated tolerance, mixed_float16 vs float32 after 4 LARS steps: relative error of each
# weight tensor below 1e-2 (float16 activations and gradients carry ~3 decimal digits).
MIXED_FLOAT16_TOLERANCE = 1e-2


def test_mixed_precision_with_loss_scaling_still_averages():
    reference, _ = train()
    model, _ = train(policy="mixed_float16")
    assert isinstance(model.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
    assert isinstance(model.optimizer.inner_optimizer, LARS)  # Horovod's subclass of LARS
    rows = gathered(model)
    np.testing.assert_array_equal(rows[0], rows[1])
    for actual, ref in zip(model.get_weights(), reference.get_weights(), strict=True):
        assert np.all(np.isfinite(actual))
        assert relative_error(actual, ref) < MIXED_FLOAT16_TOLERANCE


# Stated tolerance, an fp16-compressed allreduce vs fp32 after 2 epochs of LARS: relative
# error of each weight tensor below 1e-2 (float16 keeps 11 significant bits per gradient).
FP16_ALLREDUCE_TOLERANCE = 1e-2


def test_fp16_compressed_allreduce_is_close_to_fp32_and_identical_on_every_rank():
    def trained(fp16_allreduce: bool) -> tf.keras.Model:
        tf.keras.utils.set_random_seed(0)
        model = make_model(seed=RANK)
        distributed.broadcast_model(model)
        model.compile(loss=LOSS, optimizer=distributed.distributed_optimizer(
            LARS(**LARS_KW), fp16_allreduce=fp16_allreduce))
        x, y = rank_data(RANK)
        model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
        return model

    full, half = trained(False), trained(True)
    rows = gathered(half)
    np.testing.assert_array_equal(rows[0], rows[1])
    errors = [relative_error(a, b) for a, b in zip(half.get_weights(), full.get_weights(),
                                                    strict=True)]
    assert max(errors) < FP16_ALLREDUCE_TOLERANCE, errors
    assert max(errors) > 0, "the fp16 run equals the fp32 run: nothing was compressed"


def test_metric_average_callback_logs_the_mean_over_ranks():
    """Horovod's MetricAverageCallback (through distributed.callbacks()) on this stack: a
    metric that is the rank itself is logged as the mean over ranks, 0.5, on every rank."""
    model = make_model(seed=0)
    rank_metric = tf.keras.metrics.MeanMetricWrapper(
        lambda y_true, y_pred: tf.fill(tf.shape(y_true)[:1], float(RANK)), name="rank")
    model.compile(optimizer=distributed.distributed_optimizer(LARS(**LARS_KW)), loss=LOSS,
                  metrics=[rank_metric])
    seen = []
    record = tf.keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(logs["rank"]))
    x, y = rank_data(RANK)
    model.fit(x, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0,
              callbacks=[*distributed.callbacks(), record])
    assert seen == [0.5, 0.5], seen  # unaveraged: [0.0, 0.0] on rank 0, [1.0, 1.0] on rank 1
