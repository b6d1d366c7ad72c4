"""Learning-rate policy of large-batch training, as serializable Keras schedules.

Schedules are indexed by *optimizer step* (one step = one global batch). The decay part is
Keras's own (``PolynomialDecay`` with power 2 as in the paper, ``CosineDecay``,
``PiecewiseConstantDecay``); this module adds the linear warmup in front of it and the
linear-scaling rule. Horovod's LR callbacks cannot drive a ``LearningRateSchedule``, so the
warmup lives in the schedule object, which Horovod's optimizer rebuild keeps (it is in the
optimizer's config).
"""

from __future__ import annotations

import tensorflow as tf

from lars_hvd.stack import check_keras

check_keras(tf.keras)

schedules = tf.keras.optimizers.schedules


def linear_scaled_learning_rate(
    base_learning_rate: float, global_batch_size: int, reference_batch_size: int = 256
) -> float:
    """The linear-scaling rule: ``base_lr * global_batch / reference_batch``.

    Goyal et al. 2017 use 0.1 per 256 examples for SGD on ImageNet.
    """
    if global_batch_size <= 0 or reference_batch_size <= 0:
        raise ValueError(
            f"Batch sizes must be positive. Received: global_batch_size={global_batch_size}, "
            f"reference_batch_size={reference_batch_size}."
        )
    return base_learning_rate * global_batch_size / reference_batch_size


@tf.keras.utils.register_keras_serializable(package="lars_hvd")
class LinearWarmup(schedules.LearningRateSchedule):
    """Linear warmup into any Keras schedule.

    ```
    step <  warmup_steps:  lr = start + (after(0) - start) * step / warmup_steps
    step >= warmup_steps:  lr = after(step - warmup_steps)
    ```

    ``after`` is e.g. ``PolynomialDecay(peak, total_steps - warmup_steps, end, power=2)``,
    the paper's policy.

    Args:
      after: the schedule that follows the warmup, started at step 0 when warmup ends.
      warmup_steps: number of optimizer steps of warmup (0: no warmup).
      warmup_start_learning_rate: the learning rate at step 0.
      name: the schedule's name.
    """

    def __init__(
        self,
        after: schedules.LearningRateSchedule,
        warmup_steps: int,
        warmup_start_learning_rate: float = 0.0,
        name: str = "LinearWarmup",
    ):
        super().__init__()
        if not isinstance(after, schedules.LearningRateSchedule):
            raise ValueError(
                f"after must be a tf.keras LearningRateSchedule. Received: after={after!r}."
            )
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(
                f"warmup_steps must be an integer >= 0. Received: warmup_steps={warmup_steps!r}."
            )
        if not warmup_start_learning_rate >= 0:
            raise ValueError(
                "warmup_start_learning_rate must be >= 0. "
                f"Received: warmup_start_learning_rate={warmup_start_learning_rate!r}."
            )
        self.after = after
        self.warmup_steps = int(warmup_steps)
        self.warmup_start_learning_rate = float(warmup_start_learning_rate)
        self.name = name

    def __call__(self, step):
        with tf.name_scope(self.name):
            step = tf.cast(step, tf.float32)
            decayed = tf.cast(self.after(tf.maximum(step - self.warmup_steps, 0.0)), tf.float32)
            if self.warmup_steps == 0:
                return decayed
            peak = tf.cast(self.after(0), tf.float32)
            start = self.warmup_start_learning_rate
            warm = start + (peak - start) * step / self.warmup_steps
            return tf.where(step < self.warmup_steps, warm, decayed)

    def get_config(self) -> dict:
        return {
            "after": schedules.serialize(self.after),
            "warmup_steps": self.warmup_steps,
            "warmup_start_learning_rate": self.warmup_start_learning_rate,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> LinearWarmup:
        config = dict(config)
        config["after"] = schedules.deserialize(config["after"])
        return cls(**config)
