"""What lars_hvd needs from TensorFlow's and Horovod's internals, once, for both stacks.

The pinned stack is TensorFlow 2.15.1, whose ``tf.keras`` is Keras 2.15; the current one is
TensorFlow 2.21 with tf-keras 2.21 (``TF_USE_LEGACY_KERAS=1``). No other module imports a
private ``keras.src`` or ``tensorflow.python`` name: they differ between the two, and this
file is where a third stack would be taught.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config  # (both stacks)
from tensorflow.python.ops import control_flow_util  # (the same on TF 2.15 and 2.21)


def in_xla_compilation() -> bool:
    """True while tracing inside an XLA compilation (``jit_compile=True``)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def metric_average_callback(hvd_keras) -> tf.keras.callbacks.Callback:
    """Horovod's ``MetricAverageCallback``, working on both stacks.

    Horovod 0.28.1 hands the callback ``keras.backend`` from the top-level ``keras`` package:
    Keras 2.15 on the pinned stack, but Keras 3 beside tf-keras, whose backend has no
    ``constant`` (the callback fails at the first epoch's end). ``tf.keras.backend`` is the
    Keras 2 backend on both.
    """
    callback = hvd_keras.callbacks.MetricAverageCallback()
    callback.backend = tf.keras.backend  # Horovod: average with the Keras that trains
    return callback


def trace_horovod_as_written() -> None:
    """Tells AutoGraph to call Horovod's functions as written instead of converting them.

    Keras traces the train step with AutoGraph on, which rewrites every Python function the
    step calls, Horovod's allreduce and its op wrappers included (about 300 conversions), at
    each process's first trace. Horovod's graph code branches on tensors only through
    ``tf.cond``, so its graph is the same without the rewrite, and each process starts
    sooner (docs/testing.md has the measurement). TensorFlow keeps its own modules from
    conversion by this same rule list.
    """
    rules = autograph_config.CONVERSION_RULES
    if not any(isinstance(rule, autograph_config.DoNotConvert) and rule.matches("horovod")
               for rule in rules):
        autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert("horovod"), *rules)
