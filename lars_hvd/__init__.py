"""lars_hvd: LARS for Keras 2, trained at a fixed global batch with Horovod.

``from lars_hvd import LARS`` imports TensorFlow (lazily, on first use), so that
``python -m lars_hvd.stack`` can report a broken stack instead of crashing on import.
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
__all__ = ["LARS", "LinearWarmup"]  # noqa: F822 (imported lazily by __getattr__)


def __getattr__(name: str):
    if name == "LARS":
        from lars_hvd.optimizer import LARS

        return LARS
    if name == "LinearWarmup":
        from lars_hvd.schedules import LinearWarmup

        return LinearWarmup
    raise AttributeError(f"module 'lars_hvd' has no attribute {name!r}")
