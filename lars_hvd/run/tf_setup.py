"""TensorFlow's settings for a run: XLA, determinism, precision and the seed.

XLA's flags are read once, when TensorFlow starts, so they are set in two moments, both
here: ``before_tensorflow`` (environment, before the first ``import tensorflow``) and
``configure`` (after Horovod's init, before the model is built). This module imports
TensorFlow only inside ``configure``.
"""

from __future__ import annotations

import os
import sys

from lars_hvd.planning.config import PRECISION_POLICIES, TrainConfig


def before_tensorflow(config: TrainConfig) -> None:
    """What must be set before TensorFlow loads: XLA's CPU auto-clustering flag (without it
    auto-clustering compiles for GPUs only)."""
    if config.job.xla and "tensorflow" not in sys.modules:
        flags = os.environ.get("TF_XLA_FLAGS", "")
        if "--tf_xla_cpu_global_jit" not in flags:
            os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_cpu_global_jit".strip()


def configure(config: TrainConfig) -> None:
    """Determinism, XLA auto-clustering, the mixed-precision policy and the seed."""
    import tensorflow as tf

    if config.job.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.job.xla:
        # Auto-clustering compiles what XLA can and leaves Horovod's allreduce outside (a
        # whole-step jit_compile=True cannot hold Horovod's ops).
        tf.config.optimizer.set_jit("autoclustering")
    tf.keras.mixed_precision.set_global_policy(PRECISION_POLICIES[config.job.precision])
    tf.keras.utils.set_random_seed(config.job.seed)
