"""LARS against the NumPy reference, the pure trust-ratio function, and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from lars_reference import (
    LARS_CASES,
    excluded,
    gradients,
    initial_weights,
    lars_step,
    relative_error,
)

from lars_hvd.optim.lars import LARS, trust_ratio

pytestmark = pytest.mark.core

STEPS = 6
TOLERANCE = 1e-5  # float32 vs float64 reference, norm-wise relative error per variable


def make_variables():
    """Included, rank-excluded, regex-excluded, zero-weight and zero-gradient variables."""
    return [tf.Variable(value.astype(np.float32), name=name)
            for name, value in initial_weights(0).items()]


def gradients_for(step: int, variables):
    return gradients(100 + step, [(variable.name, variable.shape) for variable in variables])


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("case", LARS_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_matches_numpy_reference(case, compiled):
    lr, eta, patterns = case.get("lr", 2.0), 0.01, ["skip_me"]
    variables = make_variables()
    optimizer = LARS(
        learning_rate=lr,
        momentum=case["momentum"],
        nesterov=case["nesterov"],
        weight_decay_rate=case["weight_decay_rate"],
        trust_coefficient=eta,
        epsilon=case["epsilon"],
        trust_ratio_mode=case["mode"],
        exclude_from_weight_decay=patterns,
        trust_clip=case.get("clip", False),
    )
    optimizer.build(variables)

    def apply(grads):
        optimizer.apply_gradients(zip(grads, variables, strict=True))

    if compiled:
        apply = tf.function(apply, jit_compile=True)

    ref_w = [v.numpy().astype(np.float64) for v in variables]
    ref_v = [np.zeros_like(w) for w in ref_w]
    flags = [
        (
            case["weight_decay_rate"] > 0 and not excluded(v.name, v.shape, patterns, True),
            not excluded(v.name, v.shape, patterns, True),
        )
        for v in variables
    ]
    for step in range(STEPS):
        grads = gradients_for(step, variables)
        apply([tf.constant(g) for g in grads])
        for i, g in enumerate(grads):
            ref_w[i], ref_v[i] = lars_step(
                ref_w[i], g, ref_v[i], lr,
                momentum=case["momentum"], weight_decay_rate=case["weight_decay_rate"],
                trust_coefficient=eta, epsilon=case["epsilon"], nesterov=case["nesterov"],
                mode=case["mode"], decay=flags[i][0], adapt=flags[i][1],
                clip=case.get("clip", False),
            )
    assert int(optimizer.iterations.numpy()) == STEPS
    for variable, expected in zip(variables, ref_w, strict=True):
        assert np.all(np.isfinite(variable.numpy())), variable.name
        assert relative_error(variable.numpy(), expected) < TOLERANCE, variable.name


def test_reference_actually_moves_each_variable_class():
    """Guards the comparison above: every variable changes, and adaptation matters."""
    variables = make_variables()
    before = [v.numpy().copy() for v in variables]
    optimizer = LARS(learning_rate=2.0, trust_coefficient=0.01,
                     exclude_from_weight_decay=["skip_me"])
    optimizer.apply_gradients(zip([tf.constant(g) for g in gradients_for(0, variables)],
                                  variables, strict=True))
    moved = {
        v.name: float(np.abs(v.numpy() - b).max())
        for v, b in zip(variables, before, strict=True)
    }
    assert moved["frozen/kernel:0"] == 0.0  # zero gradient, no decay: no step
    assert all(moved[name] > 0 for name in moved if not name.startswith("frozen"))
    # The adapted kernel steps eta * lr * ||w|| in norm, far less than the raw-LR bias.
    kernel, bias = variables[0], variables[1]
    step_norm = np.linalg.norm(kernel.numpy() - before[0])
    assert step_norm == pytest.approx(0.01 * 2.0 * np.linalg.norm(before[0]), rel=1e-5)
    assert np.linalg.norm(bias.numpy() - before[1]) > 10 * step_norm


class TestTrustRatio:
    def test_paper_and_decayed_forms(self):
        kw = dict(trust_coefficient=0.001, weight_decay_rate=0.5, epsilon=0.25)
        paper = trust_ratio(tf.constant(3.0), tf.constant(2.0), mode="paper", **kw)
        assert float(paper) == pytest.approx(0.001 * 3.0 / (2.0 + 0.5 * 3.0 + 0.25))
        decayed = trust_ratio(tf.constant(3.0), tf.constant(2.0), mode="decayed_grad", **kw)
        assert float(decayed) == pytest.approx(0.001 * 3.0 / (2.0 + 0.25))

    @pytest.mark.parametrize("mode", ["paper", "decayed_grad"])
    @pytest.mark.parametrize("w_norm,g_norm", [(0.0, 1.0), (1.0, 0.0), (0.0, 0.0)])
    def test_zero_norm_gives_one_and_finite_gradients(self, mode, w_norm, g_norm):
        w, g = tf.Variable(w_norm), tf.Variable(g_norm)
        with tf.GradientTape() as tape:
            ratio = trust_ratio(w, g, trust_coefficient=0.001, mode=mode)
        assert float(ratio) == 1.0
        for grad in tape.gradient(ratio, [w, g]):
            assert grad is None or np.isfinite(grad.numpy())

    def test_unknown_mode(self):
        with pytest.raises(ValueError, match="Received: mode='lamb'"):
            trust_ratio(tf.constant(1.0), tf.constant(1.0), trust_coefficient=0.1, mode="lamb")


class TestValidation:
    @pytest.mark.parametrize(
        "kwargs,message",
        [
            (dict(learning_rate=-1.0), "learning_rate=-1.0"),
            (dict(momentum=1.0), "momentum=1.0"),
            (dict(momentum=-0.1), "momentum=-0.1"),
            (dict(weight_decay_rate=-1e-4), "weight_decay_rate=-0.0001"),
            (dict(trust_coefficient=0.0), "trust_coefficient=0.0"),
            (dict(epsilon=-1.0), "epsilon=-1.0"),
            (dict(trust_ratio_mode="clip"), "trust_ratio_mode='clip'"),
            (dict(momentum=0.0, nesterov=True), "nesterov=True"),
            (dict(weight_decay=1e-4), "weight_decay_rate"),
            (dict(exclude_from_weight_decay="bias"), "use \\['bias'\\]"),
            (dict(exclude_from_layer_adaptation=["("]), "invalid regular expression '\\('"),
        ],
    )
    def test_bad_arguments_name_the_value(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            LARS(**kwargs)


def test_layer_adaptation_exclusions_default_to_weight_decay_ones():
    optimizer = LARS(exclude_from_weight_decay=["bn"], weight_decay_rate=1e-4)
    assert optimizer.exclude_from_layer_adaptation == ["bn"]
    optimizer = LARS(exclude_from_weight_decay=["bn"], exclude_from_layer_adaptation=[])
    assert optimizer.exclude_from_layer_adaptation == []


def test_manifest_reports_decay_and_adaptation():
    variables = make_variables()
    optimizer = LARS(weight_decay_rate=1e-4, exclude_from_weight_decay=["skip_me"])
    with pytest.raises(ValueError, match="after the first training step"):
        optimizer.manifest()
    optimizer.build(variables)
    rows = {row["name"]: row for row in optimizer.manifest()}
    assert rows["dense/kernel:0"]["weight_decay"] and rows["dense/kernel:0"]["layer_adaptation"]
    assert not rows["dense/bias:0"]["weight_decay"]
    assert not rows["dense/bias:0"]["layer_adaptation"]
    assert not rows["skip_me/kernel:0"]["weight_decay"]
    assert rows["dense/kernel:0"]["shape"] == (5, 4)
    off = LARS(exclude_low_rank=False).manifest(variables)
    assert all(row["layer_adaptation"] for row in off)
    assert not any(row["weight_decay"] for row in off)  # weight_decay_rate is 0


def test_momentum_zero_creates_no_slots():
    variables = make_variables()
    optimizer = LARS(momentum=0.0)
    optimizer.build(variables)
    assert optimizer.momentums == []


def test_package_exports():
    import lars_hvd
    from lars_hvd.optim.lars import LARS

    assert lars_hvd.LARS is LARS


def test_recorded_trust_ratios_are_the_applied_ones():
    variables = make_variables()
    kernel_before = variables[0].numpy().astype(np.float64)
    optimizer = LARS(learning_rate=1.0, weight_decay_rate=1e-3, trust_coefficient=0.01,
                     record_trust_ratios=True, exclude_from_weight_decay=["skip_me"])
    with pytest.raises(ValueError, match="after the first training step"):
        optimizer.trust_ratios()
    grads = gradients_for(0, variables)
    optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables, strict=True))
    ratios = optimizer.trust_ratios()
    # Adapted variables only: not the bias (rank 1) nor skip_me (regex).
    assert set(ratios) == {"dense/kernel:0", "zero/kernel:0", "frozen/kernel:0"}
    w_norm, g_norm = np.linalg.norm(kernel_before), np.linalg.norm(grads[0])
    expected = 0.01 * w_norm / (g_norm + 1e-3 * w_norm)
    assert ratios["dense/kernel:0"] == pytest.approx(expected, rel=1e-5)
    assert ratios["zero/kernel:0"] == 1.0 and ratios["frozen/kernel:0"] == 1.0
    with pytest.raises(ValueError, match="record_trust_ratios=True"):
        LARS().trust_ratios()


def test_clip_caps_the_local_rate_by_the_global_rate():
    """LARC's clip policy: a layer whose trust ratio is above lr steps at lr, one below at
    its trust ratio (NVIDIA Caffe's local_rate = min(global_rate, local)); the recorded ratio
    is the multiplier of lr applied."""
    rng = np.random.default_rng(3)
    w = {"capped/kernel": 10 * rng.normal(size=(4, 4)), "free/kernel": rng.normal(size=(4, 4))}
    g = {"capped/kernel": 0.01 * rng.normal(size=(4, 4)), "free/kernel": rng.normal(size=(4, 4))}
    variables = [tf.Variable(v.astype(np.float32), name=k) for k, v in w.items()]
    lr, eta = 0.05, 0.01
    trust = {k: eta * np.linalg.norm(w[k]) / np.linalg.norm(g[k]) for k in w}
    assert trust["capped/kernel"] > lr > trust["free/kernel"]  # the case holds both sides
    optimizer = LARS(learning_rate=lr, momentum=0.0, trust_coefficient=eta, trust_clip=True,
                     record_trust_ratios=True)
    optimizer.apply_gradients(zip([tf.constant(g[k], tf.float32) for k in g], variables,
                                  strict=True))
    for variable, key in zip(variables, w, strict=True):
        expected = w[key] - min(lr, trust[key]) * g[key]
        assert relative_error(variable.numpy(), expected) < TOLERANCE, key
    ratios = optimizer.trust_ratios()
    assert ratios["capped/kernel:0"] == 1.0
    assert ratios["free/kernel:0"] == pytest.approx(trust["free/kernel"] / lr, rel=1e-5)
    assert LARS(trust_clip=True).get_config()["trust_clip"] is True
    with pytest.raises(ValueError, match="trust_clip must be True or False"):
        LARS(trust_clip="clip")
