"""RMSprop warm-up (Akiba et al. 2017) against a NumPy reference across the transition, its
config (what Horovod rebuilds it from), and its flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from lars_reference import relative_error

from lars_hvd.optim.rmsprop_warmup import RMSpropWarmup, sgd_share

pytestmark = pytest.mark.core

TOLERANCE = 1e-5  # float32 vs the float64 reference, norm-wise relative error


def share_reference(t: float, center: float, period: float) -> float:
    if t < center:
        return 0.5 * math.exp(2 * (t - center) / period)
    return min(0.5 + (t - center) / period, 1.0)


def step_reference(w, g, m, v, t, *, lr, lr_rms, mu1, mu2, eps, center, period):
    """One step in float64, written from the update rule: returns (w, m, v)."""
    a = share_reference(t, center, period)
    m = mu2 * m + (1 - mu2) * g**2
    v = mu1 * v + (a * lr + (1 - a) * lr_rms / (np.sqrt(m) + eps)) * g
    return w - v, m, v


def test_share_rises_through_its_three_pieces_continuously():
    t = tf.constant([0.0, 3.0, 5.0, 6.0, 7.0, 7.5, 8.0, 20.0])
    assert sgd_share(t, 5.0, 4.0).numpy() == pytest.approx(
        [share_reference(x, 5.0, 4.0) for x in t.numpy()], rel=1e-6)
    assert float(sgd_share(tf.constant(5.0 - 1e-4), 5.0, 4.0)) == pytest.approx(0.5, abs=1e-4)
    assert float(sgd_share(tf.constant(7.0), 5.0, 4.0)) == 1.0  # c + p / 2 on: SGD


def test_matches_numpy_reference_across_the_transition():
    # center 3, period 4 iterations: steps 0-2 exp, 3-4 linear, 5-9 plain momentum SGD.
    hyper = dict(lr=0.05, lr_rms=3e-3, mu1=0.9, mu2=0.99, eps=1e-8, center=3.0, period=4.0)
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(4, 3)), rng.normal(size=(3,))]
    variables = [tf.Variable(w.astype(np.float32)) for w in init]
    optimizer = RMSpropWarmup(learning_rate=hyper["lr"], rmsprop_learning_rate=hyper["lr_rms"],
                              momentum=hyper["mu1"], rho=hyper["mu2"], epsilon=hyper["eps"],
                              center=hyper["center"], period=hyper["period"])
    apply = tf.function(lambda grads: optimizer.apply_gradients(
        zip(grads, variables, strict=True)))
    ref = [(w.astype(np.float64), np.zeros_like(w), np.zeros_like(w)) for w in init]
    for t in range(10):
        grads = [rng.normal(scale=0.3, size=w.shape) for w in init]
        apply([tf.constant(g, tf.float32) for g in grads])
        ref = [step_reference(w, g, m, v, t, **hyper) for (w, m, v), g in zip(ref, grads,
                                                                              strict=True)]
        for variable, (w, _, _) in zip(variables, ref, strict=True):
            assert relative_error(variable.numpy(), w) < TOLERANCE, t
    # The reference is not trivial: RMSprop's steps differ from SGD's at the same rate.
    sgd_only = dict(hyper, center=0.0, period=1e-9)
    w, m, v = init[0], np.zeros_like(init[0]), np.zeros_like(init[0])
    g = rng.normal(size=w.shape)
    assert relative_error(step_reference(w, g, m, v, 0, **hyper)[0] - w,
                          step_reference(w, g, m, v, 0, **sgd_only)[0] - w) > 0.1


def test_after_the_transition_it_is_keras_sgd():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(5,)).astype(np.float32)
    ours, keras = tf.Variable(w0), tf.Variable(w0)
    warm = RMSpropWarmup(learning_rate=0.1, momentum=0.9, center=2.0, period=4.0)
    warm.build([ours])
    warm.iterations.assign(4)  # c + p / 2: the transition is over
    sgd = tf.keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    for _ in range(3):
        g = tf.constant(rng.normal(size=(5,)).astype(np.float32))
        warm.apply_gradients([(g, ours)])
        sgd.apply_gradients([(g, keras)])
    assert relative_error(ours.numpy(), keras.numpy()) < TOLERANCE


def test_config_is_complete_and_survives_horovods_rebuild():
    from lars_hvd import distributed
    from lars_hvd.optim.schedules import warmup_then_decay

    distributed.init()
    original = RMSpropWarmup(learning_rate=warmup_then_decay(0.2, 100, 10),
                             rmsprop_learning_rate=1e-3, momentum=0.8, rho=0.95, epsilon=1e-6,
                             center=40.0, period=20.0, weight_decay=1e-4)
    config = original.get_config()
    for key, value in dict(rmsprop_learning_rate=1e-3, momentum=0.8, rho=0.95, epsilon=1e-6,
                           center=40.0, period=20.0, weight_decay=1e-4).items():
        assert config[key] == pytest.approx(value), key
    wrapped = distributed.distributed_optimizer(original, backward_passes_per_step=2)
    assert isinstance(wrapped, RMSpropWarmup)
    rebuilt = wrapped.get_config()
    assert {k: v for k, v in rebuilt.items() if k != "learning_rate"} == \
        {k: v for k, v in config.items() if k != "learning_rate"}
    for step in (0, 5, 10, 60):  # the schedule came through the config too
        assert float(wrapped._learning_rate(step)) == pytest.approx(
            float(original._learning_rate(step)))


@pytest.mark.parametrize("kwargs, message", [
    (dict(period=0.0), r"period must be a float > 0"),
    (dict(rho=1.0), r"rho must be a float in \[0, 1\)"),
    (dict(rmsprop_learning_rate=-1.0), r"rmsprop_learning_rate must be a float > 0"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RMSpropWarmup(**kwargs)


@pytest.mark.fashion_mnist
def test_train_with_rmsprop_warmup(tmp_path):
    from lars_hvd.train import main

    summary = main(["--train-examples", "2048", "--global-batch-size", "256", "--epochs", "2",
                    "--optimizer", "sgd", "--learning-rate", "0.05", "--lr-scaling", "none",
                    "--rmsprop-warmup-epochs", "1", "--max-per-worker-batch", "128",
                    "--run-dir", str(tmp_path / "run")])
    assert summary.epochs_run == 2 and summary.test_accuracy > 0.3
    saved = tf.train.load_checkpoint(str(tmp_path / "run" / "checkpoints"))
    state = [k for k in saved.get_variable_to_shape_map() if k.startswith("optimizer/")]
    assert len(state) >= 1 + 2 * 11, state  # iterations, m and v of small_cnn_bn's 11


def test_the_factory_places_the_transition_in_micro_batches():
    from lars_hvd.planning.config import OptimizerConfig
    from lars_hvd.run.optimizer_factory import make_optimizer

    o = OptimizerConfig(optimizer="sgd", rmsprop_warmup_epochs=5.0, weight_decay=0.0)
    # 10 optimizer steps an epoch of 2 micro-batches each: Keras's iterations count 20.
    optimizer = make_optimizer(o, 0.1, iterations_per_epoch=20)
    assert isinstance(optimizer, RMSpropWarmup)
    assert (optimizer.center, optimizer.period) == (0.8 * 5 * 20, 0.4 * 5 * 20)
    assert optimizer.momentum == o.momentum
    plain = make_optimizer(OptimizerConfig(optimizer="sgd"), 0.1, iterations_per_epoch=20)
    assert not isinstance(plain, RMSpropWarmup)
