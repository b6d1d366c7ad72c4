"""lars_hvd: LARS for Keras 2, trained at a fixed global batch with Horovod.

``from lars_hvd import LARS, LAMB, LinearWarmup`` (the optimizers and schedules of
``lars_hvd.optim``) imports TensorFlow lazily, on first use, so that ``python -m
lars_hvd.stack`` can report a broken stack instead of crashing on import.
Importing lars_hvd before TensorFlow sets ``TF_USE_LEGACY_KERAS=1`` when tf-keras is
installed (the current stack, docs/stacks.md).
"""

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


def __getattr__(name: str):
    if name in __all__:
        from lars_hvd import optim

        return getattr(optim, name)
    raise AttributeError(f"module 'lars_hvd' has no attribute {name!r}")
