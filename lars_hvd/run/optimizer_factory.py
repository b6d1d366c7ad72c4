"""The one optimizer factory: the run's optimizer (with its LR schedule) and loss, from its
config.

Used by a training run (through ``training.compile_model``, which adds Horovod's wrapper) and
by the benchmarks; the schedule is ``lars_hvd.planning.schedule``'s, which ``--plot-lr``
draws. TensorFlow only: nothing here knows of Horovod.
"""

from __future__ import annotations

import tensorflow as tf

from lars_hvd.optim.lamb import LAMB
from lars_hvd.optim.lars import LARS
from lars_hvd.optim.rmsprop_warmup import RMSpropWarmup
from lars_hvd.planning.config import OptimizerConfig, TrainConfig
from lars_hvd.planning.plan import Plan
from lars_hvd.planning.schedule import build_schedule


def make_optimizer(o: OptimizerConfig, learning_rate, record_trust_ratios: bool = True,
                   iterations_per_epoch: int | None = None):
    """LARS, Keras SGD with momentum (or RMSprop warm-up into it), or LAMB, as ``o`` says.

    Args:
      learning_rate: a float or a Keras ``LearningRateSchedule``. LARS and LAMB exclude
        the variables of rank <= 1 themselves (``exclude_low_rank``); SGD's exclusions are
        set on the final instance by ``apply_sgd_exclusions``.
      iterations_per_epoch: ``optimizer.iterations`` per epoch (micro-batches), for
        ``--rmsprop-warmup-epochs``.
    """
    if o.optimizer == "lars":
        return LARS(
            learning_rate=learning_rate, momentum=o.momentum, nesterov=o.nesterov,
            weight_decay_rate=o.weight_decay, trust_coefficient=o.trust_coefficient,
            epsilon=o.lars_epsilon, trust_ratio_mode=o.trust_ratio_mode,
            exclude_low_rank=o.exclude_low_rank, record_trust_ratios=record_trust_ratios,
            trust_clip=o.lars_mode == "clip",
        )
    if o.optimizer == "sgd" and o.rmsprop_warmup_epochs:
        # Akiba et al.'s transition, center 10 and period 5 epochs ending at 12.5, scaled to
        # end at --rmsprop-warmup-epochs: center 0.8 E, period 0.4 E.
        end = o.rmsprop_warmup_epochs * iterations_per_epoch
        return RMSpropWarmup(
            learning_rate=learning_rate, rmsprop_learning_rate=o.rmsprop_learning_rate,
            momentum=o.momentum, center=0.8 * end, period=0.4 * end,
            weight_decay=o.weight_decay or None,
        )
    if o.optimizer == "sgd":
        return tf.keras.optimizers.SGD(
            learning_rate=learning_rate, momentum=o.momentum, nesterov=o.nesterov,
            weight_decay=o.weight_decay or None,
        )
    if o.optimizer == "lamb":
        return LAMB(
            learning_rate=learning_rate, weight_decay_rate=o.weight_decay,
            exclude_low_rank=o.exclude_low_rank,
        )
    raise AssertionError(f"optimizer {o.optimizer!r} passed validation but has no factory")


def build_optimizer(config: TrainConfig, plan: Plan):
    """The run's optimizer with the run's schedule (not yet wrapped by Horovod)."""
    return make_optimizer(config.optimizer, build_schedule(config, plan),
                          iterations_per_epoch=plan.iterations_at(plan.steps_per_epoch))


def apply_sgd_exclusions(optimizer, model: tf.keras.Model, config: TrainConfig) -> None:
    """Keras SGD keeps weight-decay exclusions outside its config, so Horovod's rebuild drops
    them: set them on the final (wrapped) instance instead."""
    o = config.optimizer
    if o.optimizer == "sgd" and o.weight_decay and o.exclude_low_rank:
        optimizer.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if v.shape.rank <= 1])


def loss_function(num_classes: int, label_smoothing: float):
    """Cross-entropy on integer labels and float32 logits, with optional label smoothing."""
    if not label_smoothing:
        return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def smoothed_cross_entropy(y_true, logits):
        one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_classes)
        return tf.keras.losses.categorical_crossentropy(
            one_hot, logits, from_logits=True, label_smoothing=label_smoothing)

    return smoothed_cross_entropy


def build_optimizer_state(optimizer, variables) -> None:
    """Creates the optimizer's slots now (to restore, broadcast or trace them before step 1:
    slots created inside a first call make a tf.function trace twice)."""
    optimizer.build(variables)


def optimizer_variables(optimizer) -> list:
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


def inner_optimizer(optimizer):
    """The optimizer under a mixed-precision loss-scale wrapper, if any."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def describe_manifest(optimizer, model) -> str:
    """One line: which variables LARS adapts and decays ("" for other optimizers)."""
    lars = inner_optimizer(optimizer)
    if not isinstance(lars, LARS):
        return ""
    rows = lars.manifest(model.trainable_variables)
    adapted = [r["name"] for r in rows if r["layer_adaptation"]]
    decayed = [r["name"] for r in rows if r["weight_decay"]]
    skipped = [r["name"] for r in rows if not r["layer_adaptation"]]
    return (f"LARS: {len(adapted)} of {len(rows)} variables adapted, {len(decayed)} decayed; "
            f"excluded from both: {len(skipped)} ({', '.join(skipped[:6])}"
            f"{', ...' if len(skipped) > 6 else ''})"
            + ("; local rate min(lr, trust) (LARC clip)" if lars.trust_clip else ""))
