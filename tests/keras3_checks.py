"""lars_hvd.keras3 against the NumPy references, on the Keras 3 backend in use.

test_keras3.py calls these functions in its own process (the TensorFlow backend), and in
processes of the JAX and PyTorch backends where TensorFlow cannot be imported, as their
users need not have it. By hand:

    KERAS_BACKEND=jax python tests/keras3_checks.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import keras
import numpy as np
from lars_reference import (
    LARS_CASES,
    excluded,
    gradients,
    initial_weights,
    lamb_reference,
    lars_step,
    relative_error,
)

import lars_hvd
from lars_hvd.keras3 import LAMB, LARS

STEPS = 6
PATTERNS = ["skip_me"]
LOSS_SCALE = 2.0**10
# Loss scaling checked with weight decay: LARS given the scaled gradients would then differ.
SCALED_CASE = dict(mode="paper", momentum=0.9, nesterov=False, weight_decay_rate=5e-3,
                   epsilon=0.0)


def make_variables(seed: int) -> list:
    """``initial_weights`` as Keras 3 variables, path ``dense/kernel`` and so on."""
    variables = []
    for path, value in initial_weights(seed).items():
        scope, name = path.split("/")
        with keras.name_scope(scope):
            variables.append(keras.Variable(value.astype("float32"), name=name))
    return variables


def _value(variable) -> np.ndarray:
    return keras.ops.convert_to_numpy(variable)


def apply(optimizer, grads, variables) -> None:
    """One step, as Keras's trainer of this backend takes it: on JAX statelessly (a
    LossScaleOptimizer has no other way there), on TensorFlow in place (it has no other)."""
    if keras.backend.backend() != "jax":
        optimizer.apply(grads, variables)
        return
    optimizer.build(variables)
    values, state = optimizer.stateless_apply([v.value for v in optimizer.variables], grads,
                                              [v.value for v in variables])
    for variable, value in zip([*variables, *optimizer.variables], [*values, *state],
                               strict=True):
        variable.assign(value)


def lars_error(case: dict, loss_scale: float | None = None) -> float:
    """The largest relative error of a variable after STEPS LARS steps, against
    ``lars_step``; with ``loss_scale``, through a LossScaleOptimizer given scaled gradients
    (LARS then sees them unscaled)."""
    lr, eta = case.get("lr", 2.0), 0.01
    variables = make_variables(0)
    optimizer = LARS(learning_rate=lr, momentum=case["momentum"], nesterov=case["nesterov"],
                     weight_decay_rate=case["weight_decay_rate"], trust_coefficient=eta,
                     epsilon=case["epsilon"], trust_ratio_mode=case["mode"],
                     exclude_from_weight_decay=PATTERNS, trust_clip=case.get("clip", False))
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=loss_scale)
    flags = [(case["weight_decay_rate"] > 0 and not excluded(v.path, v.shape, PATTERNS, True),
              not excluded(v.path, v.shape, PATTERNS, True)) for v in variables]
    ref_w = [_value(v).astype(np.float64) for v in variables]
    ref_v = [np.zeros_like(w) for w in ref_w]
    for step in range(STEPS):
        grads = gradients(100 + step, [(v.path, v.shape) for v in variables])
        apply(optimizer, [g * (loss_scale or 1.0) for g in grads], variables)
        for i, g in enumerate(grads):
            ref_w[i], ref_v[i] = lars_step(
                ref_w[i], g, ref_v[i], lr, momentum=case["momentum"],
                weight_decay_rate=case["weight_decay_rate"], trust_coefficient=eta,
                epsilon=case["epsilon"], nesterov=case["nesterov"], mode=case["mode"],
                decay=flags[i][0], adapt=flags[i][1], clip=case.get("clip", False))
    return max(relative_error(_value(v), w) for v, w in zip(variables, ref_w, strict=True))


def lamb_error(weight_decay_rate: float) -> float:
    """As ``lars_error``, for LAMB against ``lamb_reference``."""
    lr, beta_1, beta_2, epsilon = 0.05, 0.9, 0.99, 1e-6
    variables = make_variables(1)
    start = [_value(v) for v in variables]
    optimizer = LAMB(learning_rate=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                     weight_decay_rate=weight_decay_rate, exclude_from_weight_decay=PATTERNS)
    all_grads = [gradients(200 + step, [(v.path, v.shape) for v in variables])
                 for step in range(STEPS)]
    for grads in all_grads:
        apply(optimizer, grads, variables)
    excluded = [any(p in v.path for p in PATTERNS) for v in variables]
    expected = lamb_reference(start, all_grads, lr, beta_1, beta_2, epsilon, weight_decay_rate,
                              excluded)
    return max(relative_error(_value(v), w) for v, w in zip(variables, expected, strict=True))


def trains_and_reloads(folder: Path, optimizer, mixed: bool = False) -> dict:
    """A small model trained four epochs with ``optimizer`` (in mixed float16: compile wraps
    it in a LossScaleOptimizer), saved as .keras and loaded: its losses, and whether the
    loaded optimizer has the same class, config and slot values."""
    rng = np.random.default_rng(3)  # (keras.utils.set_random_seed would import TensorFlow)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    keras.mixed_precision.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:  # (loaded under the policy it was trained with, as a resumed run would be)
        model = keras.Sequential([
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=1)),
            keras.layers.Dense(2, kernel_initializer=keras.initializers.GlorotUniform(seed=2))])
        model.compile(optimizer=optimizer, metrics=["accuracy"],
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x, y, batch_size=32, epochs=4, verbose=0)
        model.save(folder / "model.keras")
        loaded = keras.models.load_model(folder / "model.keras")
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    inner = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    inner_loaded = getattr(loaded.optimizer, "inner_optimizer", loaded.optimizer)
    return {
        "loss": [float(loss) for loss in history.history["loss"]],
        "accuracy": float(history.history["accuracy"][-1]),
        "wrapped": type(model.optimizer).__name__,
        "same_class": type(inner_loaded) is type(inner),
        "same_config": inner_loaded.get_config() == inner.get_config(),
        "same_slots": all(np.array_equal(_value(a), _value(b)) for a, b in
                          zip(inner.variables, inner_loaded.variables, strict=True)),
    }


def everything() -> dict:
    """Every check on this backend, by name."""
    with tempfile.TemporaryDirectory() as tmp:
        trained = {name: trains_and_reloads(Path(tmp), optimizer, mixed)
                   for name, optimizer, mixed in [
                       ("lars", LARS(learning_rate=0.2, trust_coefficient=0.05,
                                     weight_decay_rate=1e-4), False),
                       ("lamb", LAMB(learning_rate=0.05, weight_decay_rate=0.01), False),
                       ("lars_mixed", LARS(learning_rate=0.2, trust_coefficient=0.05), True)]}
    return {
        "backend": keras.backend.backend(),
        "lars": {"-".join(f"{v}" for v in case.values()): lars_error(case)
                 for case in LARS_CASES},
        "lars_loss_scaled": lars_error(SCALED_CASE, LOSS_SCALE),
        "lamb": {str(rate): lamb_error(rate) for rate in (0.0, 0.01)},
        "trained": trained,
        "top_level_lars": lars_hvd.LARS.__module__,  # from lars_hvd import LARS
    }


if __name__ == "__main__":
    print(json.dumps(everything()))
