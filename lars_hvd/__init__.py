"""lars_hvd: LARS for Keras 2, trained at a fixed global batch with Horovod; LARS and LAMB
for Keras 3 too.

``from lars_hvd import LARS, LAMB, LinearWarmup`` (the optimizers and schedules of
``lars_hvd.optim``) imports TensorFlow lazily, on first use, so that ``python -m
lars_hvd.stack`` can report a broken stack instead of crashing on import. ``LARS`` and
``LAMB`` are those of the Keras that ``tf.keras`` is (``keras_generation``): Keras 2's
(``lars_hvd.optim``, what Horovod training needs) where Keras 2 is installed, or tf-keras
with ``TF_USE_LEGACY_KERAS=1``; else Keras 3's (``lars_hvd.keras3``, any backend).
Importing lars_hvd before TensorFlow sets ``TF_USE_LEGACY_KERAS=1`` when tf-keras is
installed (the current stack, docs/stacks.md).
"""

import importlib.metadata
import importlib.util
import os

# Keras 2 for tf.keras on every stack: on TensorFlow >= 2.16 (Keras 3 by default) tf-keras
# provides the Keras 2 API, which Horovod's Keras wrapper needs, when this is set before
# TensorFlow loads. An explicit TF_USE_LEGACY_KERAS is left alone (lars_hvd.stack checks it).
if "TF_USE_LEGACY_KERAS" not in os.environ and importlib.util.find_spec("tf_keras"):
    os.environ["TF_USE_LEGACY_KERAS"] = "1"

__version__ = "0.1.0"
# What a Keras user imports (lars_hvd.optim), loaded on first use.
__all__ = ["LARS", "LAMB", "RMSpropWarmup", "LinearWarmup", "PerOptimizerStep",  # noqa: F822
           "warmup_then_decay"]


def keras_generation(keras_version: str | None, tf_keras: bool, legacy: str | None) -> int:
    """2 or 3: the Keras that ``tf.keras`` is, from the installed ``keras`` (its version, or
    None), whether tf-keras is installed, and ``TF_USE_LEGACY_KERAS``."""
    if keras_version is None or int(keras_version.split(".")[0]) < 3:
        return 2
    return 2 if tf_keras and legacy in ("1", "true", "True") else 3


def _installed_keras_generation() -> int:
    try:
        version = importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return keras_generation(version, importlib.util.find_spec("tf_keras") is not None,
                            os.environ.get("TF_USE_LEGACY_KERAS"))


def __getattr__(name: str):
    if name in ("LARS", "LAMB") and _installed_keras_generation() == 3:
        from lars_hvd import keras3

        return getattr(keras3, name)
    if name in __all__:
        from lars_hvd import optim

        return getattr(optim, name)
    raise AttributeError(f"module 'lars_hvd' has no attribute {name!r}")
