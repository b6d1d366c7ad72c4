"""RMSprop warm-up: momentum SGD that starts as RMSprop (Akiba, Suzuki, Fukuda 2017).

This module is only the algorithm, its state and its config; it knows nothing of Horovod
(``lars_hvd.distributed`` wraps it, and Horovod rebuilds it from ``get_config()``).
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from lars_hvd.optim.common import handle
from lars_hvd.optim.rules import check_learning_rate
from lars_hvd.stack import check_keras

check_keras(tf.keras)


def sgd_share(iteration, center: float, period: float):
    """Akiba et al.'s ``alpha_SGD`` at ``iteration`` (a float tensor), rising from about 0
    to 1: ``exp`` up to ``center``, then linear, 1 from ``center + period / 2`` on.

    ```
    alpha = exp(2 (t - c) / p) / 2     t < c
    alpha = 1/2 + (t - c) / p          c <= t < c + p / 2
    alpha = 1                          t >= c + p / 2
    ```
    Continuous, and its slope too (1 / p on both sides of c). The paper's middle piece is
    printed, as far as the project could check (third-party transcriptions, not the PDF), as
    ``1/2 + 2 (t - c) / p``, which jumps from 1.5 to 1 at ``c + p / 2``; one third-party
    implementation (crest-deep/dlframeworks, its GPU kernel) uses the continuous form above.
    """
    c, p = tf.cast(center, iteration.dtype), tf.cast(period, iteration.dtype)
    rising = 0.5 * tf.exp(tf.minimum(2.0 * (iteration - c) / p, 0.0))
    linear = 0.5 + (iteration - c) / p
    return tf.where(iteration < c, rising, tf.minimum(linear, 1.0))


@tf.keras.utils.register_keras_serializable(package="lars_hvd")
class RMSpropWarmup(tf.keras.optimizers.Optimizer):
    r"""Momentum SGD that starts as RMSprop and moves to plain momentum SGD.

    For every variable ``w`` with gradient ``g``, at iteration ``t`` (``optimizer.iterations``)
    with the SGD learning rate ``lr`` (a float or a schedule), the RMSprop learning rate
    ``lr_rms``, momentum ``mu1`` and the second-moment decay ``mu2``:

    ```
    m     = mu2 * m + (1 - mu2) * g**2
    a     = alpha_SGD(t)                                  # sgd_share: about 0 -> 1
    v     = mu1 * v + (a * lr + (1 - a) * lr_rms / (sqrt(m) + epsilon)) * g
    w     = w - v
    ```

    Akiba, Suzuki, Fukuda 2017, "Extremely Large Minibatch SGD: Training ResNet-50 on
    ImageNet in 15 Minutes" (arXiv:1711.04325), "RMSprop warm-up": ``m_t = mu2 m + (1 - mu2)
    g^2``, ``Delta_t = mu1 Delta - (alpha_SGD + alpha_RMSprop / (sqrt(m_t) + eps)) g``,
    ``theta += eta Delta``, with ``alpha_SGD`` rising from 0 to 1 (center 10 and period 5
    epochs in their 90-epoch ResNet-50 run). The project could not read the PDF here; the
    equations are the paper's as two third-party sources transcribe them (a paper summary
    and crest-deep/dlframeworks' Chainer optimizer ``rmsprop_warmup.py``, whose defaults
    mu1 = 0.9, mu2 = 0.99, eps = 1e-8, lr_rms = 3e-4 and ``alpha_RMSprop = (1 - alpha_SGD)
    lr_rms / eta`` are used here). Two choices of ours: the learning rate lives inside the
    velocity, as in Keras SGD (the same update at a constant rate; under a schedule, a change
    of ``lr`` does not rescale the velocity already built), and ``alpha_SGD`` is continuous
    (see ``sgd_share``). At ``alpha_SGD = 1`` the update is Keras SGD with momentum.

    ``center`` and ``period`` count ``optimizer.iterations`` (with Horovod's gradient
    accumulation over k micro-batches, k per optimizer step); ``lars_hvd.train`` derives them
    from ``--rmsprop-warmup-epochs``. Under accumulation the share is read at the step's last
    micro-batch (``n k + k - 1``), less than a step ahead of the LR schedule's ``n``.
    Weight decay is the Keras base class's (decoupled, ``weight_decay=``, with its
    ``exclude_from_weight_decay``), as for ``--optimizer sgd``; it steps at the SGD ``lr``
    from the start, also while the gradient's step is RMSprop's (the Chainer code couples
    it into the gradient instead).

    It does not compose with LARS: LARS's trust ratio scales a layer's SGD step to a fixed
    fraction of its weights, while RMSprop's per-coordinate normalization already sets the
    step's size, so the two would fight over the same quantity, and neither paper defines
    the product.
    """

    def __init__(self, learning_rate=0.1, rmsprop_learning_rate: float = 3e-4,
                 momentum: float = 0.9, rho: float = 0.99, epsilon: float = 1e-8,
                 center: float = 0.0, period: float = 1.0, name: str = "RMSpropWarmup",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        check_learning_rate(learning_rate)
        for argument, value, ok, wanted in [
            ("rmsprop_learning_rate", rmsprop_learning_rate, lambda v: v > 0, "> 0"),
            ("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)"),
            ("rho", rho, lambda v: 0 <= v < 1, "in [0, 1)"),
            ("epsilon", epsilon, lambda v: v > 0, "> 0"),
            ("center", center, lambda v: v >= 0, ">= 0"),
            ("period", period, lambda v: v > 0, "> 0"),
        ]:
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not ok(value):
                raise ValueError(f"{argument} must be a float {wanted}. "
                                 f"Received: {argument}={value!r}.")
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.rmsprop_learning_rate = float(rmsprop_learning_rate)
        self.momentum, self.rho, self.epsilon = float(momentum), float(rho), float(epsilon)
        self.center, self.period = float(center), float(period)

    def build(self, var_list):
        """Creates the second moment ``m`` and the velocity ``v`` of every variable."""
        super().build(var_list)
        if hasattr(self, "_built") and self._built:
            return
        self.second_moments = [self.add_variable_from_reference(v, "m") for v in var_list]
        self.velocities = [self.add_variable_from_reference(v, "v") for v in var_list]
        self._built = True

    def update_step(self, gradient, variable):
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        dtype = variable.dtype
        index = self._index_dict[self._var_key(variable)]
        m, v = self.second_moments[index], self.velocities[index]
        share = tf.cast(sgd_share(tf.cast(self.iterations, tf.float32), self.center,
                                  self.period), dtype)
        new_m = self.rho * m + (1 - self.rho) * tf.square(gradient)
        rate = (share * tf.cast(self.learning_rate, dtype)
                + (1 - share) * self.rmsprop_learning_rate / (tf.sqrt(new_m) + self.epsilon))
        new_v = self.momentum * v + rate * gradient
        m.assign(new_m)
        v.assign(new_v)
        tf.raw_ops.AssignSubVariableOp(resource=handle(variable), value=new_v)

    def get_config(self) -> dict:
        """Every constructor argument: Horovod rebuilds the optimizer from this."""
        config = super().get_config()
        config.update({
            "learning_rate": self._serialize_hyperparameter(self._learning_rate),
            "rmsprop_learning_rate": self.rmsprop_learning_rate,
            "momentum": self.momentum, "rho": self.rho, "epsilon": self.epsilon,
            "center": self.center, "period": self.period,
        })
        return config
