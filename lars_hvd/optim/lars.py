"""LARS: layer-wise adaptive rate scaling, as a Keras 2 optimizer.

This module is only the algorithm, its state and its config. It knows nothing of Horovod:
``lars_hvd.distributed`` wraps it, and Horovod rebuilds it from ``get_config()``, which is
why every constructor argument is in the config.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from lars_hvd import compat
from lars_hvd.optim import rules
from lars_hvd.optim.common import Keras2, handle, l2_norm
from lars_hvd.stack import check_keras

check_keras(tf.keras)


def trust_ratio(weight_norm, grad_norm, **kwargs):
    """``rules.trust_ratio`` (the formula, its arguments) on TensorFlow tensors."""
    return rules.trust_ratio(weight_norm, grad_norm, ops=tf, **kwargs)


def _l2_norms(weight, grad):
    """``(||weight||, ||grad||)``: LARS's two norms, in the form that is fastest where traced.

    Plain TF runs each norm as one multi-threaded pass. XLA on CPU runs a reduction to a
    scalar on one thread, so there both are one reduction of shape ``[2, n]`` (the stack is
    fused into it, never materialized), which XLA splits across two threads (the effect is
    measured by ``python -m lars_hvd.bench optimizer``).
    """
    if compat.in_xla_compilation():
        stacked = tf.stack([tf.reshape(weight, [-1]), tf.reshape(grad, [-1])])
        squares = tf.reduce_sum(tf.square(stacked), axis=1)
        return tf.sqrt(squares[0]), tf.sqrt(squares[1])
    return l2_norm(weight), l2_norm(grad)


@tf.keras.utils.register_keras_serializable(package="lars_hvd")
class LARS(Keras2, rules.Exclusions, tf.keras.optimizers.Optimizer):
    r"""SGD with momentum and layer-wise adaptive rate scaling (LARS).

    For every variable ``w`` with gradient ``g`` (averaged over workers before it gets
    here), at global learning rate ``lr``, momentum ``m``, trust coefficient ``eta`` and
    coupled weight decay ``beta``:

    ```
    d     = g + beta * w                      # beta = 0 if w is excluded from weight decay
    trust = eta * ||w|| / (||g|| + beta * ||w|| + epsilon)   # trust_ratio_mode="paper"
    trust = eta * ||w|| / (||d|| + epsilon)                  # trust_ratio_mode="decayed_grad"
    trust = 1   if w is excluded from layer adaptation, or ||w|| == 0, or the gradient norm == 0
    v     = m * v + lr * trust * d            # trust_clip: min(lr, trust) in place of lr * trust
    w     = w - v                             # nesterov: w = w - (m * v + lr * trust * d)
    ```

    docs/optimizer.md says where each form comes from (the paper, LARC's clip policy in
    NVIDIA's Caffe and apex, Model Garden, MLPerf) and how a step is computed.

    Args:
      learning_rate: a float or a ``LearningRateSchedule`` indexed by optimizer step.
      momentum: ``m``, in [0, 1).
      weight_decay_rate: ``beta``, L2 *coupled* into the gradient before the trust ratio, as
        the paper; Keras's ``weight_decay`` (decoupled) is refused.
      trust_coefficient: ``eta``.
      epsilon: added to the trust ratio's denominator.
      nesterov: Nesterov momentum.
      trust_ratio_mode: ``"paper"`` (Algorithm 1) or ``"decayed_grad"``; equal when
        ``beta = 0``.
      exclude_from_weight_decay: patterns ``re.search``-ed in ``variable.name``
        (``"conv1/kernel:0"``): a match gets no decay.
      exclude_from_layer_adaptation: likewise, a match gets ``trust = 1`` (None: the
        weight-decay patterns).
      exclude_low_rank: every variable of rank <= 1 (biases, batch-norm gamma and beta) is
        excluded from both, MLPerf's and NVIDIA's rule. Such a variable steps at the raw
        global LR (about 1-30 for LARS): a network without batch norm wants False.
      record_trust_ratios: keep every adapted variable's last trust ratio (``trust_ratios()``;
        with ``trust_clip``, the multiplier of ``lr`` applied, ``min(1, trust / lr)``).
      trust_clip: LARC's clip policy: the local rate is ``min(lr, trust)``.
      name: the optimizer's name; ``**kwargs`` are Keras's (``clipnorm``, ...).

    Example:
    ```python
    model.compile(optimizer=LARS(learning_rate=10.0, weight_decay_rate=5e-4),
                  loss="sparse_categorical_crossentropy")
    ```

    References:
      - You, Gitman, Ginsburg, 2017. "Scaling SGD Batch Size to 32K for ImageNet Training"
        (v2/v3: "Large Batch Training of Convolutional Networks"), arXiv:1708.03888,
        Algorithm 1.
    """

    def __init__(
        self,
        learning_rate=1.0,
        momentum: float = 0.9,
        weight_decay_rate: float = 0.0,
        trust_coefficient: float = 0.001,
        epsilon: float = 0.0,
        nesterov: bool = False,
        trust_ratio_mode: str = "paper",
        exclude_from_weight_decay: Sequence[str] | None = None,
        exclude_from_layer_adaptation: Sequence[str] | None = None,
        exclude_low_rank: bool = True,
        record_trust_ratios: bool = False,
        trust_clip: bool = False,
        name: str = "LARS",
        **kwargs,
    ):
        settings = rules.constructor_settings("lars", locals())
        super().__init__(name=name, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        rules.take(self, settings)

    # -- exclusions (rules.Exclusions, named by common.Keras2) ------------------------------

    def manifest(self, var_list=None) -> list[dict]:
        """Which variables get weight decay and layer adaptation.

        Args:
          var_list: the variables to describe; defaults to those the optimizer was built for.

        Returns:
          One dict per variable: ``name``, ``shape``, ``weight_decay``, ``layer_adaptation``.
        """
        return super().manifest(self._built_variables() if var_list is None else var_list)

    def trust_ratios(self) -> dict[str, float]:
        """The last step's trust ratio of every adapted variable, by variable name.

        Needs ``record_trust_ratios=True`` and a built optimizer.
        """
        return {name: float(record.numpy())
                for name, record in self.trust_ratio_records().items()}

    def trust_ratio_records(self) -> dict:
        """The scalar variables that hold ``trust_ratios()``, by variable name: read them in
        a traced function to log every layer's ratio without a host read per layer."""
        if not self.record_trust_ratios:
            raise ValueError("trust_ratios() needs LARS(record_trust_ratios=True).")
        return {
            variable.name: record
            for variable, record in zip(self._built_variables(), self._trust_ratio_records,
                                        strict=True)
            if self.uses_layer_adaptation(variable)
        }

    def _built_variables(self) -> list:
        if not getattr(self, "_built", False):
            raise ValueError(
                "LARS.manifest() without var_list needs a built optimizer: call it after "
                "the first training step or optimizer.build(model.trainable_variables)."
            )
        return list(self._lars_variables)

    # -- state and update -------------------------------------------------------------------

    def build(self, var_list):
        """Creates one velocity slot ``v`` per variable (none when momentum is 0)."""
        super().build(var_list)
        if hasattr(self, "_built") and self._built:
            return
        self._lars_variables = list(var_list)
        self.momentums = []
        self._trust_ratio_records = []
        if self.record_trust_ratios:
            for variable in var_list:
                # Named after the model variable, never a process-local id: Horovod matches
                # tensors across ranks by name when it broadcasts optimizer variables.
                self._trust_ratio_records.append(
                    self.add_variable(shape=(), dtype=tf.float32, initializer="ones",
                                      name=f"trust_ratio/{variable.name.split(':')[0]}")
                )
        if self.momentum > 0:
            for variable in var_list:
                self.momentums.append(
                    self.add_variable_from_reference(model_variable=variable, variable_name="v")
                )
        self._built = True

    def update_step(self, gradient, variable):
        """Applies one LARS step to ``variable`` (see the class docstring)."""
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        weight_decay_rate = self.weight_decay_rate if self.uses_weight_decay(variable) else 0.0
        direction = gradient + weight_decay_rate * variable if weight_decay_rate else gradient
        if self.uses_layer_adaptation(variable):
            decayed = self.trust_ratio_mode == "decayed_grad"
            weight_norm, grad_norm = _l2_norms(variable, direction if decayed else gradient)
            ratio = trust_ratio(
                weight_norm,
                grad_norm,
                trust_coefficient=self.trust_coefficient,
                weight_decay_rate=weight_decay_rate,
                epsilon=self.epsilon,
                mode=self.trust_ratio_mode,
            )
            local_lr, ratio = rules.local_rate(lr, ratio, clip=self.trust_clip, ops=tf)
            if self.record_trust_ratios:
                index = self._index_dict[self._var_key(variable)]
                self._trust_ratio_records[index].assign(tf.cast(ratio, tf.float32))
        else:
            local_lr = lr
        if self.momentum == 0:
            tf.raw_ops.ResourceApplyGradientDescent(var=handle(variable), alpha=local_lr,
                                                    delta=direction)
            return
        # Keras's fused momentum kernel, with neg_v = -v:  neg_v = m * neg_v - local_lr * d;
        # w += neg_v  (nesterov: w += m * neg_v - local_lr * d), i.e. the update above.
        neg_velocity = self.momentums[self._index_dict[self._var_key(variable)]]
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=handle(variable), accum=handle(neg_velocity), lr=local_lr, grad=direction,
            momentum=tf.cast(self.momentum, dtype), use_nesterov=self.nesterov)

    def get_config(self) -> dict:
        """Every constructor argument: Horovod rebuilds the optimizer from this."""
        config = super().get_config()
        config["learning_rate"] = self._serialize_hyperparameter(self._learning_rate)
        config.update(rules.settings_of(self, rules.LARS_SETTINGS))
        return config
