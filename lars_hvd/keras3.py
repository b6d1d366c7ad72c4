"""LARS and LAMB for Keras 3, on any backend (TensorFlow, JAX, PyTorch).

    import keras
    from lars_hvd.keras3 import LARS

    model.compile(optimizer=LARS(learning_rate=10.0, weight_decay_rate=5e-4), loss=...)

The algorithms of the Keras 2 classes (``lars_hvd.optim.lars``, ``.lamb``: their docstrings
have the update rules): the same arguments, config, exclusions and trust ratios, from
``lars_hvd.optim.rules``, written with ``keras.ops`` only, so that this module imports no
TensorFlow of its own. Exclusion patterns are searched in ``variable.path``
(``"dense/kernel"``). Horovod training (``python -m lars_hvd.train``) stays on Keras 2:
Horovod's Keras wrapper is Keras 2 only (docs/optimizer.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from lars_hvd.optim import rules

if int(keras.__version__.split(".")[0]) < 3:
    raise ImportError(
        f"lars_hvd.keras3 is for Keras 3, but keras is {keras.__version__}: for Keras 2 "
        f"(tf.keras) use `from lars_hvd.optim import LARS, LAMB`.")
ops = keras.ops


def l2_norm(tensor):
    return ops.sqrt(ops.sum(ops.square(tensor)))


class _Keras3(rules.Exclusions, keras.optimizers.Optimizer):
    """What both optimizers do the Keras 3 way: name variables by path, refuse another
    Keras's variables, say which Keras they are for."""

    @staticmethod
    def name_of(variable) -> str:
        return variable.path

    @staticmethod
    def shape_of(variable) -> tuple:
        return tuple(variable.shape)

    def build(self, var_list):
        for variable in var_list:
            if not isinstance(variable, keras.Variable):
                raise ValueError(
                    f"lars_hvd.keras3.{type(self).__name__} optimizes Keras 3 variables, but "
                    f"got {type(variable).__name__} {getattr(variable, 'name', variable)!r}: "
                    f"for a tf.keras (Keras 2) model use lars_hvd.optim."
                    f"{type(self).__name__}.")
        super().build(var_list)
        # (decayed, adapted) by variable index: update_step may get the backend's variable
        # (on TensorFlow a tf.Variable, which has no path)
        self._exclusions = [(self.uses_weight_decay(variable), self.uses_layer_adaptation(variable))
                            for variable in var_list]

    def manifest(self, var_list=None) -> list[dict]:
        """Which variables get weight decay and layer adaptation: one dict per variable
        (``name``, ``shape``, ``weight_decay``, ``layer_adaptation``), by default of those
        the optimizer was built for."""
        return super().manifest(self._built_variables() if var_list is None else var_list)

    def _built_variables(self) -> list:
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}.manifest() without var_list needs a built optimizer: "
                f"call it after the first training step or "
                f"optimizer.build(model.trainable_variables).")
        return list(self._trainable_variables)

    def __repr__(self) -> str:
        # What Keras 2's compile() prints when it is given this optimizer.
        return (f"<lars_hvd.keras3.{type(self).__name__}, for Keras 3: a tf.keras model needs "
                f"lars_hvd.optim.{type(self).__name__}>")


@keras.saving.register_keras_serializable(package="lars_hvd")
class LARS(_Keras3):
    """SGD with momentum and layer-wise adaptive rate scaling (LARS), for Keras 3.

    For every variable ``w`` with gradient ``g``, at global learning rate ``lr``:

    ```
    d     = g + beta * w                      # beta = 0 if w is excluded from weight decay
    trust = eta * ||w|| / (||g|| + beta * ||w|| + epsilon)   # trust_ratio_mode="paper"
    trust = eta * ||w|| / (||d|| + epsilon)                  # trust_ratio_mode="decayed_grad"
    trust = 1   if w is excluded from layer adaptation, or either norm is 0
    v     = m * v + lr * trust * d            # trust_clip: min(lr, trust) for lr * trust
    w     = w - v                             # nesterov: w = w - (m * v + lr * trust * d)
    ```

    Arguments, defaults and exclusions are those of ``lars_hvd.optim.LARS`` (its docstring
    says each); the slot ``momentum`` holds ``-v``, as Keras's SGD does.

    References:
      - You, Gitman, Ginsburg, 2017. "Large Batch Training of Convolutional Networks",
        arXiv:1708.03888, Algorithm 1.
    """

    def __init__(self, learning_rate=1.0, momentum: float = 0.9, weight_decay_rate: float = 0.0,
                 trust_coefficient: float = 0.001, epsilon: float = 0.0, nesterov: bool = False,
                 trust_ratio_mode: str = "paper",
                 exclude_from_weight_decay: Sequence[str] | None = None,
                 exclude_from_layer_adaptation: Sequence[str] | None = None,
                 exclude_low_rank: bool = True, record_trust_ratios: bool = False,
                 trust_clip: bool = False, name: str = "LARS", **kwargs):
        settings = rules.constructor_settings("lars", locals())
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        rules.take(self, settings)

    def build(self, var_list):
        """Creates one velocity slot per variable (none when momentum is 0), and with
        ``record_trust_ratios`` one scalar per variable."""
        if self.built:
            return
        super().build(var_list)
        self.momentums = ([self.add_variable_from_reference(variable, "momentum")
                           for variable in var_list] if self.momentum > 0 else [])
        self._trust_ratio_records = [
            self.add_variable(shape=(), initializer="ones", dtype="float32",
                              name=f"{variable.path.replace('/', '_')}_trust_ratio")
            for variable in var_list] if self.record_trust_ratios else []

    def update_step(self, gradient, variable, learning_rate):
        """Applies one LARS step to ``variable`` (see the class docstring)."""
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        decayed, adapted = self._exclusions[index]
        beta = self.weight_decay_rate if decayed else 0.0
        direction = ops.add(gradient, ops.multiply(variable, beta)) if beta else gradient
        local_lr = lr
        if adapted:
            norm_of_direction = self.trust_ratio_mode == "decayed_grad"
            ratio = rules.trust_ratio(
                l2_norm(variable), l2_norm(direction if norm_of_direction else gradient),
                trust_coefficient=self.trust_coefficient, weight_decay_rate=beta,
                epsilon=self.epsilon, mode=self.trust_ratio_mode, ops=ops)
            local_lr, ratio = rules.local_rate(lr, ratio, clip=self.trust_clip, ops=ops)
            if self.record_trust_ratios:
                self.assign(self._trust_ratio_records[index], ops.cast(ratio, "float32"))
        step = ops.multiply(direction, local_lr)
        if self.momentum == 0:
            self.assign_sub(variable, step)
            return
        neg_velocity = self.momentums[index]  # -v:  -v = m * (-v) - step;  w += -v
        self.assign(neg_velocity, ops.subtract(ops.multiply(neg_velocity, self.momentum), step))
        if self.nesterov:
            self.assign_add(variable,
                            ops.subtract(ops.multiply(neg_velocity, self.momentum), step))
        else:
            self.assign_add(variable, neg_velocity)

    def trust_ratios(self) -> dict[str, float]:
        """The last step's trust ratio of every adapted variable, by variable path (with
        ``trust_clip``, the multiplier of lr applied). Needs ``record_trust_ratios=True``."""
        if not self.record_trust_ratios:
            raise ValueError("trust_ratios() needs LARS(record_trust_ratios=True).")
        return {variable.path: float(ops.convert_to_numpy(record))
                for variable, record in zip(self._built_variables(), self._trust_ratio_records,
                                            strict=True)
                if self.uses_layer_adaptation(variable)}

    def get_config(self) -> dict:
        """Every constructor argument."""
        return {**super().get_config(), **rules.settings_of(self, rules.LARS_SETTINGS)}


@keras.saving.register_keras_serializable(package="lars_hvd")
class LAMB(_Keras3):
    """Layer-wise Adaptive Moments for Batch training (LAMB), for Keras 3.

    Adam's step plus the weight decay, ``u``, scaled per layer by the trust ratio
    ``||w|| / ||u||``: ``w = w - lr * trust * u`` (the rule in full, the arguments and
    defaults: ``lars_hvd.optim.LAMB``, tensorflow-addons' LAMB). Unlike
    ``keras.optimizers.Lamb``, the decay enters the trust ratio and variables can be
    excluded by name.

    Reference: You et al., 2019. "Large Batch Optimization for Deep Learning: Training BERT
    in 76 minutes", arXiv:1904.00962, Algorithm 2.
    """

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-6, weight_decay_rate: float = 0.0,
                 exclude_from_weight_decay: Sequence[str] | None = None,
                 exclude_from_layer_adaptation: Sequence[str] | None = None,
                 exclude_low_rank: bool = False, name: str = "LAMB", **kwargs):
        settings = rules.constructor_settings("lamb", locals())
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        rules.take(self, settings)

    def build(self, var_list):
        """Creates the two moment slots ``m`` and ``v`` per variable."""
        if self.built:
            return
        super().build(var_list)
        self.first_moments = [self.add_variable_from_reference(variable, "m")
                              for variable in var_list]
        self.second_moments = [self.add_variable_from_reference(variable, "v")
                               for variable in var_list]

    def update_step(self, gradient, variable, learning_rate):
        """Applies one LAMB step to ``variable`` (see the class docstring)."""
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        step = ops.cast(self.iterations + 1, variable.dtype)
        index = self._get_variable_index(variable)
        decayed, adapted = self._exclusions[index]
        m, v = self.first_moments[index], self.second_moments[index]
        new_m, new_v, update = rules.lamb_moments(
            ops.convert_to_tensor(m), ops.convert_to_tensor(v), gradient, step,
            beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon, ops=ops)
        self.assign(m, new_m)
        self.assign(v, new_v)
        if decayed:
            update = ops.add(update, ops.multiply(variable, self.weight_decay_rate))
        if adapted:
            update = ops.multiply(
                rules.lamb_trust_ratio(l2_norm(variable), l2_norm(update), ops=ops), update)
        self.assign_sub(variable, ops.multiply(update, lr))

    def get_config(self) -> dict:
        """Every constructor argument."""
        return {**super().get_config(), **rules.settings_of(self, rules.LAMB_SETTINGS)}
