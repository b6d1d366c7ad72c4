"""LAMB (lars_hvd.optim.lamb) against a NumPy reference and, on the pinned stack, against
tensorflow-addons' LAMB; its config round trip and input checks."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import tensorflow as tf
from lars_reference import gradients, initial_weights, lamb_reference, relative_error

from lars_hvd.optim.lamb import LAMB

pytestmark = pytest.mark.core

STEPS = 6
PATTERNS = ["bias", "skip_me"]  # found in tfa's names (no ":0") and in ours alike
PINNED = tf.__version__.startswith("2.15.")


def make_variables():
    """Adapted, excluded (bias, regex), zero-weight and zero-gradient variables."""
    return [tf.Variable(value.astype(np.float32), name=name)
            for name, value in initial_weights(1).items()]


def gradients_for(step: int, variables) -> list[np.ndarray]:
    return gradients(200 + step, [(variable.name, variable.shape) for variable in variables])


@pytest.mark.parametrize("weight_decay_rate", [0.0, 0.01])
def test_matches_numpy_reference(weight_decay_rate):
    lr, beta_1, beta_2, epsilon = 0.05, 0.9, 0.99, 1e-6
    variables = make_variables()
    start = [v.numpy() for v in variables]
    optimizer = LAMB(learning_rate=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                     weight_decay_rate=weight_decay_rate, exclude_from_weight_decay=PATTERNS)
    all_grads = [gradients_for(step, variables) for step in range(STEPS)]
    for grads in all_grads:
        optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables, strict=True))
    excluded = [any(p in v.name for p in PATTERNS) for v in variables]
    expected = lamb_reference(start, all_grads, lr, beta_1, beta_2, epsilon, weight_decay_rate,
                              excluded)
    for variable, want, before in zip(variables, expected, start, strict=True):
        if not variable.name.startswith("frozen"):
            assert not np.allclose(variable.numpy(), before), variable.name  # it moved
        assert relative_error(variable.numpy(), want) < 1e-5, variable.name


def test_layer_adaptation_changes_the_step():
    """Guards the comparison above: the trust ratio makes adapted layers step differently."""
    grads = [tf.constant(g) for g in gradients_for(0, make_variables())]
    adapted, plain = make_variables(), make_variables()
    LAMB(learning_rate=0.05).apply_gradients(zip(grads, adapted, strict=True))
    LAMB(learning_rate=0.05, exclude_from_layer_adaptation=[".*"]).apply_gradients(
        zip(grads, plain, strict=True))
    assert not np.allclose(adapted[0].numpy(), plain[0].numpy())


def test_exclude_low_rank_is_the_rank_rule_of_lars():
    """exclude_low_rank=True excludes every variable of rank <= 1 from decay and adaptation,
    as naming each one does; the variables of higher rank are not excluded."""
    variables = make_variables()
    low = [f"^{re.escape(v.name)}$" for v in variables if v.shape.rank <= 1]
    assert low and len(low) < len(variables)
    by_rank, by_name = make_variables(), make_variables()
    for optimizer, weights in (
            (LAMB(learning_rate=0.05, weight_decay_rate=0.01, exclude_low_rank=True), by_rank),
            (LAMB(learning_rate=0.05, weight_decay_rate=0.01, exclude_from_weight_decay=low),
             by_name)):
        for step in range(3):
            optimizer.apply_gradients(zip([tf.constant(g) for g in gradients_for(step, weights)],
                                          weights, strict=True))
        manifest = optimizer.manifest(weights)
        assert [row["layer_adaptation"] for row in manifest] == \
            [v.shape.rank > 1 for v in variables]
    for a, b in zip(by_rank, by_name, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    assert LAMB(exclude_low_rank=True).get_config()["exclude_low_rank"] is True


@pytest.mark.skipif(not PINNED, reason="tensorflow-addons imports on the pinned stack only")
@pytest.mark.parametrize("weight_decay_rate", [0.0, 0.01])
def test_matches_tensorflow_addons(weight_decay_rate):
    """The LAMB that the study used before: the same weights within 1e-6 after 6 steps."""
    import tensorflow_addons as tfa  # (make install puts it on the pinned stack: .[crosscheck])

    ours_vars, theirs_vars = make_variables(), make_variables()
    kwargs = dict(learning_rate=0.05, beta_1=0.9, beta_2=0.99, epsilon=1e-6,
                  exclude_from_weight_decay=PATTERNS)
    ours = LAMB(weight_decay_rate=weight_decay_rate, **kwargs)
    theirs = tfa.optimizers.LAMB(weight_decay=weight_decay_rate, **kwargs)
    for step in range(STEPS):
        grads = gradients_for(step, ours_vars)
        ours.apply_gradients(zip([tf.constant(g) for g in grads], ours_vars, strict=True))
        theirs.apply_gradients(zip([tf.constant(g) for g in grads], theirs_vars, strict=True))
    for a, b in zip(ours_vars, theirs_vars, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6, err_msg=a.name)


def test_config_round_trip_and_serialization():
    schedule = tf.keras.optimizers.schedules.PolynomialDecay(0.01, 100, 0.0, power=2.0)
    optimizer = LAMB(learning_rate=schedule, beta_2=0.98, weight_decay_rate=0.01,
                     exclude_from_weight_decay=["bias"], exclude_from_layer_adaptation=["bn"])
    config = optimizer.get_config()
    again = LAMB.from_config(copy.deepcopy(config))  # (from_config rewrites its argument)
    assert again.get_config() == config
    restored = tf.keras.optimizers.deserialize(tf.keras.optimizers.serialize(optimizer))
    assert isinstance(restored, LAMB) and restored.get_config() == config


@pytest.mark.parametrize("kwargs, named", [
    (dict(learning_rate=-1.0), "learning_rate=-1.0"),
    (dict(beta_1=1.0), "beta_1=1.0"),
    (dict(epsilon=0.0), "epsilon=0.0"),
    (dict(weight_decay_rate=-0.1), "weight_decay_rate=-0.1"),
    (dict(weight_decay=0.1), "weight_decay=0.1"),
    (dict(exclude_from_weight_decay="bias"), "exclude_from_weight_decay='bias'"),
])
def test_bad_arguments_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(".", r"\.")):
        LAMB(**kwargs)
