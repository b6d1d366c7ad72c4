"""Learning-rate policy of large-batch training, as serializable Keras schedules.

Schedules are indexed by *optimizer step* (one step = one global batch). The decay part is
Keras's own (``PolynomialDecay`` with power 2 as in the paper, ``CosineDecay``,
``PiecewiseConstantDecay``); this module adds the linear warmup in front of it and the index
by optimizer step under gradient accumulation. Horovod's LR callbacks cannot drive a
``LearningRateSchedule``, so the warmup lives in the schedule object, which Horovod's
optimizer rebuild keeps (it is in the optimizer's config). The linear-scaling rule that sets
the peak is planning's (``lars_hvd.planning.plan.linear_scaled_learning_rate``).
"""

from __future__ import annotations

import tensorflow as tf

from lars_hvd.stack import check_keras

check_keras(tf.keras)

schedules = tf.keras.optimizers.schedules


class _WrapsSchedule(schedules.LearningRateSchedule):
    """A schedule that holds another one in its constructor argument ``inner_argument``;
    ``get_config`` serializes it, ``from_config`` rebuilds it."""

    inner_argument = ""

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config[cls.inner_argument] = schedules.deserialize(config[cls.inner_argument])
        return cls(**config)


@tf.keras.utils.register_keras_serializable(package="lars_hvd")
class LinearWarmup(_WrapsSchedule):
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

    inner_argument = "after"

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


@tf.keras.utils.register_keras_serializable(package="lars_hvd")
class PerOptimizerStep(_WrapsSchedule):
    """Indexes ``schedule`` by optimizer step when ``iterations`` counts micro-batches.

    With gradient accumulation (Horovod's ``backward_passes_per_step = k``), Keras's
    ``optimizer.iterations`` advances on every micro-batch, and the real update happens on
    the k-th, at ``iterations = n * k + k - 1``. So ``lr(iterations) = schedule(iterations // k)``
    gives update n the learning rate of optimizer step n.
    """

    inner_argument = "schedule"

    def __init__(self, schedule: schedules.LearningRateSchedule, micro_batches_per_step: int,
                 name: str = "PerOptimizerStep"):
        super().__init__()
        if int(micro_batches_per_step) != micro_batches_per_step or micro_batches_per_step < 1:
            raise ValueError(
                "micro_batches_per_step must be an integer >= 1. "
                f"Received: micro_batches_per_step={micro_batches_per_step!r}."
            )
        self.schedule = schedule
        self.micro_batches_per_step = int(micro_batches_per_step)
        self.name = name

    def __call__(self, step):
        step = tf.cast(step, tf.int64) // self.micro_batches_per_step
        return self.schedule(step)

    def get_config(self) -> dict:
        return {
            "schedule": schedules.serialize(self.schedule),
            "micro_batches_per_step": self.micro_batches_per_step,
            "name": self.name,
        }


def warmup_then_decay(
    peak_learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    *,
    warmup_start_learning_rate: float = 0.0,
    decay: str = "poly",
    poly_power: float = 2.0,
    end_learning_rate: float = 0.0,
    step_boundaries: tuple[int, ...] = (),
    step_factor: float = 0.1,
) -> schedules.LearningRateSchedule:
    """The large-batch LR policy, indexed by optimizer step: linear warmup, then a decay.

    ```
    poly    (You et al. 2017):  lr = (peak - end) * (1 - t / T) ** power + end
    cosine:                      lr = end + (peak - end) * (1 + cos(pi * t / T)) / 2
    step    (Goyal et al. 2017): lr = peak * factor ** (boundaries passed)
    none:                        lr = peak
    ```
    where t counts steps after the warmup and T = total_steps - warmup_steps.

    Args:
      peak_learning_rate: the LR at the end of warmup (already linearly scaled, if scaled).
      total_steps: optimizer steps of the whole run.
      warmup_steps: optimizer steps of linear warmup from ``warmup_start_learning_rate``.
      step_boundaries: for ``decay="step"``, optimizer steps (from step 0 of the run) at
        which the LR is multiplied by ``step_factor``.
    """
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}). "
                         f"Received: warmup_steps={warmup_steps}.")
    decay_steps = total_steps - warmup_steps
    if decay == "poly":
        after = schedules.PolynomialDecay(peak_learning_rate, decay_steps,
                                          end_learning_rate=end_learning_rate, power=poly_power)
    elif decay == "cosine":
        after = schedules.CosineDecay(peak_learning_rate, decay_steps,
                                      alpha=end_learning_rate / peak_learning_rate)
    elif decay == "step":
        boundaries = [int(b) - warmup_steps for b in step_boundaries if b > warmup_steps]
        values = [peak_learning_rate * step_factor ** i for i in range(len(boundaries) + 1)]
        after = (schedules.PiecewiseConstantDecay(boundaries, values) if boundaries
                 else schedules.PolynomialDecay(peak_learning_rate, 1, peak_learning_rate))
    elif decay == "none":
        after = schedules.PolynomialDecay(peak_learning_rate, 1, peak_learning_rate)
    else:
        raise ValueError(f"decay must be one of poly, cosine, step, none. Received: "
                         f"decay={decay!r}.")
    return LinearWarmup(after, warmup_steps, warmup_start_learning_rate)


@tf.keras.utils.register_keras_serializable(package="lars_hvd")
class Rescaled(_WrapsSchedule):
    """``schedule`` on another step axis: ``lr(step) = factor * schedule(step * step_scale +
    step_offset)``.

    A batch that grows during training (``--batch-schedule``) changes the steps an epoch
    takes. The run's schedule is written for the first phase's steps; each later phase reads
    it at the same point of training (the same epoch, i.e. examples seen), so warmup and
    decay keep their shape in epochs: ``step_scale`` is the first phase's steps per epoch
    over this phase's, ``step_offset`` places the phase's first step at its first epoch, and
    ``factor`` is its peak LR over the first phase's (the linear rule; 1 for an absolute LR).
    """

    inner_argument = "schedule"

    def __init__(self, schedule: schedules.LearningRateSchedule, step_scale: float,
                 step_offset: float = 0.0, factor: float = 1.0, name: str = "Rescaled"):
        super().__init__()
        if not step_scale > 0 or not factor > 0:
            raise ValueError(f"step_scale and factor must be > 0. Received: step_scale="
                             f"{step_scale!r}, factor={factor!r}.")
        self.schedule = schedule
        self.step_scale, self.step_offset = float(step_scale), float(step_offset)
        self.factor, self.name = float(factor), name

    def __call__(self, step):
        step = tf.cast(step, tf.float32) * self.step_scale + self.step_offset
        return self.factor * tf.cast(self.schedule(step), tf.float32)

    def get_config(self) -> dict:
        return {"schedule": schedules.serialize(self.schedule), "step_scale": self.step_scale,
                "step_offset": self.step_offset, "factor": self.factor, "name": self.name}
