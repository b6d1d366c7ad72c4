"""LAMB (You et al. 2019): Adam with a layer-wise trust ratio, for Keras 2 on both stacks.

The study's third optimizer. tensorflow-addons had one, but it is unmaintained and does not
import on TensorFlow >= 2.16; this is the same algorithm (its defaults, its exclusions, its
step count), checked against a NumPy reference and, on the pinned stack, against
tensorflow-addons' LAMB (tests/test_lamb.py). Like LARS it knows nothing of Horovod.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from lars_hvd.optim import rules
from lars_hvd.optim.common import Keras2, l2_norm
from lars_hvd.stack import check_keras

check_keras(tf.keras)


@tf.keras.utils.register_keras_serializable(package="lars_hvd")
class LAMB(Keras2, rules.Exclusions, tf.keras.optimizers.Optimizer):
    r"""Layer-wise Adaptive Moments for Batch training (LAMB).

    For every variable ``w`` with gradient ``g`` at step ``t`` (1, 2, ...; the optimizer's
    ``iterations`` + 1, as tensorflow-addons counts it):

    ```
    m = beta_1 * m + (1 - beta_1) * g            v = beta_2 * v + (1 - beta_2) * g**2
    u = (m / (1 - beta_1**t)) / (sqrt(v / (1 - beta_2**t)) + epsilon)
    u = u + weight_decay_rate * w                # 0 if w is excluded from weight decay
    trust = ||w|| / ||u||   (1 if either is 0, or w is excluded from layer adaptation)
    w = w - lr * trust * u
    ```

    The weight decay is added to the Adam update, not to the gradient (so it bypasses the
    moments), as in the paper; it is named ``weight_decay_rate`` because the Keras base
    class's ``weight_decay`` is a different, separately applied decay and is refused.
    Exclusions are regular expressions searched in ``variable.name``;
    ``exclude_from_layer_adaptation`` defaults to ``exclude_from_weight_decay``. With
    ``exclude_low_rank=True`` every variable of rank <= 1 (biases, batch-norm gamma and beta)
    is excluded from both, LARS's rule (``lars_hvd.train`` passes its
    ``--exclude-low-rank``); the default, False, is the paper's and tensorflow-addons'.

    Reference: You et al., 2019. "Large Batch Optimization for Deep Learning: Training BERT
    in 76 minutes", arXiv:1904.00962, Algorithm 2.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-6,
        weight_decay_rate: float = 0.0,
        exclude_from_weight_decay: Sequence[str] | None = None,
        exclude_from_layer_adaptation: Sequence[str] | None = None,
        exclude_low_rank: bool = False,
        name: str = "LAMB",
        **kwargs,
    ):
        settings = rules.constructor_settings("lamb", locals())
        super().__init__(name=name, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        rules.take(self, settings)

    def build(self, var_list):
        """Creates the two moment slots ``m`` and ``v`` per variable."""
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self.first_moments = [self.add_variable_from_reference(variable, "m")
                              for variable in var_list]
        self.second_moments = [self.add_variable_from_reference(variable, "v")
                               for variable in var_list]
        self._built = True

    def update_step(self, gradient, variable):
        """Applies one LAMB step to ``variable`` (see the class docstring)."""
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        index = self._index_dict[self._var_key(variable)]
        m, v = self.first_moments[index], self.second_moments[index]
        new_m, new_v, update = rules.lamb_moments(
            m, v, gradient, step, beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
            ops=tf)
        m.assign(new_m)
        v.assign(new_v)
        if self.uses_weight_decay(variable):
            update += self.weight_decay_rate * variable
        if self.uses_layer_adaptation(variable):
            update = rules.lamb_trust_ratio(l2_norm(variable), l2_norm(update), ops=tf) * update
        variable.assign_sub(lr * update)

    def get_config(self) -> dict:
        """Every constructor argument: Horovod rebuilds the optimizer from this."""
        config = super().get_config()
        config["learning_rate"] = self._serialize_hyperparameter(self._learning_rate)
        config.update(rules.settings_of(self, rules.LAMB_SETTINGS))
        return config
