"""LARS and LAMB for Keras 3 (lars_hvd.keras3): the NumPy references on the TensorFlow
backend (here) and on JAX (a process without TensorFlow), loss scaling, .keras files, the
config, and the errors of a Keras mismatch. Keras 3 is the current stack's (beside
tf-keras): on the pinned stack (Keras 2.15) only the refusal is checked."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

KERAS = __import__("keras").__version__
KERAS3 = int(KERAS.split(".")[0]) >= 3
needs_keras3 = pytest.mark.skipif(not KERAS3, reason=f"Keras {KERAS}: Keras 3 is the current "
                                  f"stack's (make test-core STACK=current)")
TOLERANCE = 1e-5  # float32 against the float64 reference, norm-wise, per variable
HERE = Path(__file__).parent


def check(results: dict) -> None:
    """What every backend must show (keras3_checks.everything())."""
    assert max(results["lars"].values()) < TOLERANCE, results["lars"]
    assert results["lars_loss_scaled"] < TOLERANCE, results["lars_loss_scaled"]
    assert max(results["lamb"].values()) < TOLERANCE, results["lamb"]
    for name, trained in results["trained"].items():
        assert trained["loss"][-1] < trained["loss"][0], (name, trained)
        assert trained["accuracy"] > 0.8, (name, trained)
        assert trained["same_class"] and trained["same_config"] and trained["same_slots"], (
            name, trained)
    assert results["trained"]["lars_mixed"]["wrapped"] == "LossScaleOptimizer"


@needs_keras3
def test_matches_the_references_on_tensorflow():
    import keras3_checks

    results = keras3_checks.everything()
    check(results)
    # tf-keras is installed beside Keras 3 and lars_hvd set TF_USE_LEGACY_KERAS=1
    assert results["top_level_lars"] == "lars_hvd.optim.lars"


@needs_keras3
@pytest.mark.multiprocess
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_matches_the_references_without_tensorflow(backend, tmp_path):
    """On JAX and on PyTorch, in a process where TensorFlow cannot be imported (a
    ``tensorflow`` package ahead on the path that raises ModuleNotFoundError, as where it is
    not installed): lars_hvd.keras3 needs none."""
    if importlib.util.find_spec(backend) is None:
        why = f"{backend} is not installed (make install STACK=current installs it: .[keras3])"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run this test, but: {why}", pytrace=False)
        pytest.skip(why)
    absent = tmp_path / "absent" / "tensorflow"
    absent.mkdir(parents=True)
    (absent / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tensorflow' (tests/test_keras3.py)\", "
        "name='tensorflow')\n")
    env = {**os.environ, "KERAS_BACKEND": backend, "KERAS_HOME": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(absent.parent), str(HERE)]),
           "TF_USE_LEGACY_KERAS": "0"}  # (tf-keras is installed: this says Keras 3)
    code = "import json, keras3_checks; print(json.dumps(keras3_checks.everything()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["backend"] == backend
    check(results)
    assert results["top_level_lars"] == "lars_hvd.keras3"


@needs_keras3
def test_the_config_holds_every_argument_and_rebuilds_the_optimizer():
    import keras

    from lars_hvd.keras3 import LAMB, LARS

    schedule = keras.optimizers.schedules.CosineDecay(0.1, 1000, warmup_target=2.0,
                                                      warmup_steps=100)
    for optimizer in (LARS(learning_rate=schedule, momentum=0.8, weight_decay_rate=1e-4,
                           trust_coefficient=0.02, epsilon=1e-9, nesterov=True,
                           trust_ratio_mode="decayed_grad", exclude_from_weight_decay=["bn"],
                           exclude_from_layer_adaptation=["bias"], exclude_low_rank=False,
                           record_trust_ratios=True, trust_clip=True),
                      LAMB(learning_rate=schedule, beta_1=0.8, beta_2=0.9, epsilon=1e-7,
                           weight_decay_rate=0.01, exclude_from_weight_decay=["bn"],
                           exclude_from_layer_adaptation=["bias"])):
        config = optimizer.get_config()
        arguments = set(inspect.signature(type(optimizer).__init__).parameters) - {
            "self", "kwargs"}
        assert arguments <= set(config), arguments - set(config)
        again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(again) is type(optimizer) and again.get_config() == config


@needs_keras3
def test_exclusions_search_the_variable_path():
    import keras

    from lars_hvd.keras3 import LARS

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="head"),
                              keras.layers.BatchNormalization(name="bn")], name="net")
    optimizer = LARS(weight_decay_rate=1e-4, exclude_from_weight_decay=["head/kernel"],
                     exclude_low_rank=False)
    optimizer.build(model.trainable_variables)
    manifest = {entry["name"]: entry for entry in optimizer.manifest()}
    assert manifest["net/head/kernel"]["weight_decay"] is False
    assert manifest["net/bn/gamma"]["weight_decay"] is True  # rank 1, rule off
    assert manifest["net/head/kernel"]["shape"] == (3, 4)


@needs_keras3
def test_bad_arguments_are_named_as_in_keras_2():
    from lars_hvd.keras3 import LAMB, LARS

    for make, kwargs, named in [(LARS, dict(momentum=1.0), "momentum=1.0"),
                                (LARS, dict(trust_ratio_mode="lamb"), "trust_ratio_mode='lamb'"),
                                (LARS, dict(weight_decay=0.1), "weight_decay=0.1"),
                                (LAMB, dict(beta_2=1.5), "beta_2=1.5"),
                                (LAMB, dict(exclude_from_weight_decay="bias"),
                                 "exclude_from_weight_decay='bias'")]:
        with pytest.raises(ValueError, match=named.replace(".", r"\.")):
            make(**kwargs)


@needs_keras3
def test_a_keras_mismatch_is_one_error_naming_the_class_to_use():
    import keras
    import tensorflow as tf

    from lars_hvd import keras3, optim

    keras3_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"lars_hvd\.optim\.LARS, for tf\.keras \(Keras 2\): a "
                                         r"Keras 3 model needs lars_hvd\.keras3\.LARS"):
        keras3_model.compile(optimizer=optim.LARS(), loss="mse")
    tf_keras_model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"lars_hvd\.keras3\.LAMB, for Keras 3: a tf\.keras "
                                         r"model needs lars_hvd\.optim\.LAMB"):
        tf_keras_model.compile(optimizer=keras3.LAMB(), loss="mse")
    with pytest.raises(ValueError, match=r"optimizes Keras 3 variables, but got .* use "
                                         r"lars_hvd\.optim\.LARS"):
        keras3.LARS().build(tf_keras_model.trainable_variables)


@pytest.mark.parametrize("keras_version, tf_keras, legacy, generation", [
    ("2.15.0", False, None, 2),  # the pinned stack
    ("3.15.1", True, "1", 2),  # the current stack (lars_hvd sets TF_USE_LEGACY_KERAS=1)
    ("3.15.1", True, "0", 3),  # tf-keras installed, Keras 3 asked for
    ("3.15.1", False, None, 3),  # pip install tensorflow, or keras with JAX
    ("3.15.1", False, "1", 3),  # TF_USE_LEGACY_KERAS without tf-keras: tf.keras is Keras 3
    (None, False, None, 2),  # no keras package: tf.keras (TensorFlow < 2.13)
])
def test_top_level_lars_follows_the_keras_of_tf_keras(keras_version, tf_keras, legacy,
                                                      generation):
    import lars_hvd

    assert lars_hvd.keras_generation(keras_version, tf_keras, legacy) == generation


@pytest.mark.skipif(KERAS3, reason="the refusal is for Keras 2 (the pinned stack)")
def test_keras3_module_refuses_keras_2_naming_the_fix():
    with pytest.raises(ImportError, match=r"lars_hvd\.keras3 is for Keras 3, but keras is 2\.\S+: "
                                          r"for Keras 2 \(tf\.keras\) use `from lars_hvd\.optim"):
        import lars_hvd.keras3  # noqa: F401
