"""What LARS and LAMB are on every Keras: their checked arguments, exclusions and trust ratios.

Neither TensorFlow nor Keras is imported here. The Keras 2 classes (``lars_hvd.optim.lars``,
``.lamb``) and the Keras 3 ones (``lars_hvd.keras3``) pass their tensor functions as ``ops``
(``tf`` or ``keras.ops``; this module uses ``where``, ``logical_and``, ``ones_like``,
``minimum`` and ``sqrt``, which both spell alike), so that the math is written once.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable

from lars_hvd.optim.modes import TRUST_RATIO_MODES

# -- the trust ratios -------------------------------------------------------------------------


def trust_ratio(weight_norm, grad_norm, *, trust_coefficient: float,
                weight_decay_rate: float = 0.0, epsilon: float = 0.0, mode: str = "paper",
                ops):
    """The LARS local learning rate of one layer (a pure function of two norms).

    ```
    paper:         trust = eta * ||w|| / (||g|| + beta * ||w|| + epsilon)
    decayed_grad:  trust = eta * ||w|| / (||g + beta * w|| + epsilon)
    either norm is 0:  trust = 1
    ```

    Args:
      weight_norm: ``||w||``, a scalar tensor.
      grad_norm: ``||g||`` in ``"paper"`` mode, ``||g + beta * w||`` in ``"decayed_grad"`` mode.
      trust_coefficient: eta, the paper's 0.001.
      weight_decay_rate: beta, the coupled weight decay of this variable (0 if excluded).
      epsilon: added to the denominator; the paper has none.
      mode: ``"paper"`` or ``"decayed_grad"``.
      ops: ``tf`` or ``keras.ops``.

    Returns:
      A scalar tensor of the dtype of ``weight_norm``; never NaN or Inf for finite inputs,
      because a zero norm on either side gives a ratio of 1.
    """
    if mode == "paper":
        denominator = grad_norm + weight_decay_rate * weight_norm + epsilon
    elif mode == "decayed_grad":
        denominator = grad_norm + epsilon
    else:
        raise ValueError(
            f"trust_ratio_mode must be one of {TRUST_RATIO_MODES}. Received: mode={mode!r}"
        )
    return _ratio_or_one(trust_coefficient * weight_norm, denominator,
                         ops.logical_and(weight_norm > 0, grad_norm > 0), ops)


def local_rate(lr, ratio, *, clip: bool, ops) -> tuple:
    """``(local rate, multiplier of lr)`` of an adapted layer: ``lr * trust``, or with LARC's
    clip policy ``min(lr, trust)`` (the trust ratio is then the local rate itself, capped by
    lr; its multiplier of lr is 1 where lr = 0, when no step is taken)."""
    if not clip:
        return lr * ratio, ratio
    rate = ops.minimum(lr, ratio)
    return rate, _ratio_or_one(rate, lr, lr > 0, ops)


def lamb_trust_ratio(weight_norm, update_norm, *, ops):
    """LAMB's ``||w|| / ||u||``, 1 if either norm is 0."""
    return _ratio_or_one(weight_norm, update_norm,
                         ops.logical_and(weight_norm > 0, update_norm > 0), ops)


def lamb_moments(m, v, gradient, step, *, beta_1: float, beta_2: float, epsilon: float, ops):
    """``(m, v, u)``: LAMB's new moments and its Adam direction at ``step`` (1, 2, ...)."""
    m = beta_1 * m + (1.0 - beta_1) * gradient
    v = beta_2 * v + (1.0 - beta_2) * (gradient * gradient)
    m_hat = m / (1.0 - beta_1 ** step)
    v_hat = v / (1.0 - beta_2 ** step)
    return m, v, m_hat / (ops.sqrt(v_hat) + epsilon)


def _ratio_or_one(numerator, denominator, defined, ops):
    # Divide by 1 where the ratio is discarded, so no Inf/NaN is ever produced, even inside
    # a gradient of this function.
    safe = ops.where(defined, denominator, ops.ones_like(denominator))
    ratio = numerator / safe
    return ops.where(defined, ratio, ops.ones_like(ratio))


# -- which variables are decayed and adapted ------------------------------------------------


class Exclusions:
    """Which variables get weight decay and the trust ratio, for an optimizer holding
    ``weight_decay_rate``, ``exclude_from_weight_decay``, ``exclude_from_layer_adaptation``
    and ``exclude_low_rank`` and naming its Keras's variables by ``name_of`` and
    ``shape_of``."""

    exclude_low_rank = False

    @staticmethod
    def name_of(variable) -> str:
        raise NotImplementedError

    @staticmethod
    def shape_of(variable) -> tuple:
        raise NotImplementedError

    def _excluded(self, variable, patterns: Iterable[str]) -> bool:
        if self.exclude_low_rank and len(self.shape_of(variable)) <= 1:
            return True
        return any(re.search(pattern, self.name_of(variable)) for pattern in patterns)

    def uses_weight_decay(self, variable) -> bool:
        """Whether ``variable`` gets the weight decay."""
        return self.weight_decay_rate > 0 and not self._excluded(
            variable, self.exclude_from_weight_decay)

    def uses_layer_adaptation(self, variable) -> bool:
        """Whether ``variable`` gets the trust ratio (else trust = 1)."""
        return not self._excluded(variable, self.exclude_from_layer_adaptation)

    def manifest(self, var_list) -> list[dict]:
        """One dict per variable of ``var_list``: ``name``, ``shape``, ``weight_decay``,
        ``layer_adaptation``."""
        return [{"name": self.name_of(variable), "shape": self.shape_of(variable),
                 "weight_decay": self.uses_weight_decay(variable),
                 "layer_adaptation": self.uses_layer_adaptation(variable)}
                for variable in var_list]


# -- the arguments ----------------------------------------------------------------------------


def lars_settings(*, momentum, weight_decay_rate, trust_coefficient, epsilon, nesterov,
                  trust_ratio_mode, exclude_from_weight_decay, exclude_from_layer_adaptation,
                  exclude_low_rank, record_trust_ratios, trust_clip) -> dict:
    """LARS's checked arguments but the learning rate, by name: its config."""
    if not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be a float in [0, 1). Received: momentum={momentum!r}.")
    check_weight_decay_rate(weight_decay_rate)
    if not isinstance(trust_coefficient, (int, float)) or not trust_coefficient > 0:
        raise ValueError(
            f"trust_coefficient must be a float > 0 (the paper uses 0.001). "
            f"Received: trust_coefficient={trust_coefficient!r}.")
    if not isinstance(epsilon, (int, float)) or not epsilon >= 0:
        raise ValueError(f"epsilon must be a float >= 0. Received: epsilon={epsilon!r}.")
    if trust_ratio_mode not in TRUST_RATIO_MODES:
        raise ValueError(f"trust_ratio_mode must be one of {TRUST_RATIO_MODES}. "
                         f"Received: trust_ratio_mode={trust_ratio_mode!r}.")
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0. Received: nesterov=True, momentum=0.")
    if not isinstance(trust_clip, bool):
        raise ValueError(f"trust_clip must be True or False (LARC's clip or scale policy). "
                         f"Received: trust_clip={trust_clip!r}.")
    decay, adaptation = exclusions(exclude_from_weight_decay, exclude_from_layer_adaptation)
    return {"momentum": float(momentum), "weight_decay_rate": float(weight_decay_rate),
            "trust_coefficient": float(trust_coefficient), "epsilon": float(epsilon),
            "nesterov": bool(nesterov), "trust_ratio_mode": trust_ratio_mode,
            "exclude_from_weight_decay": decay, "exclude_from_layer_adaptation": adaptation,
            "exclude_low_rank": bool(exclude_low_rank),
            "record_trust_ratios": bool(record_trust_ratios), "trust_clip": trust_clip}


def lamb_settings(*, beta_1, beta_2, epsilon, weight_decay_rate, exclude_from_weight_decay,
                  exclude_from_layer_adaptation, exclude_low_rank) -> dict:
    """LAMB's checked arguments but the learning rate, by name: its config."""
    for argument, value in (("beta_1", beta_1), ("beta_2", beta_2)):
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{argument} must be a float in [0, 1). "
                             f"Received: {argument}={value!r}.")
    if not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"epsilon must be a float > 0. Received: epsilon={epsilon!r}.")
    check_weight_decay_rate(weight_decay_rate)
    decay, adaptation = exclusions(exclude_from_weight_decay, exclude_from_layer_adaptation)
    return {"beta_1": float(beta_1), "beta_2": float(beta_2), "epsilon": float(epsilon),
            "weight_decay_rate": float(weight_decay_rate),
            "exclude_from_weight_decay": decay, "exclude_from_layer_adaptation": adaptation,
            "exclude_low_rank": bool(exclude_low_rank)}


# Each optimizer's arguments but the learning rate, in its config (and the Keras base's).
LARS_SETTINGS = tuple(inspect.signature(lars_settings).parameters)
LAMB_SETTINGS = tuple(inspect.signature(lamb_settings).parameters)
PATTERNS = ("exclude_from_weight_decay", "exclude_from_layer_adaptation")


# How each optimizer decays weights (what the refused Keras base ``weight_decay`` is not).
DECAY_FORMS = {"lars": "LARS couples weight decay into the gradient before the trust ratio",
               "lamb": "LAMB adds its weight decay to the Adam update before the trust ratio"}


def constructor_settings(kind: str, given: dict) -> dict:
    """The checked settings of a LARS or LAMB constructor (``kind``: "lars" or "lamb") on any
    Keras, from its ``locals()``: the Keras base class's decoupled ``weight_decay`` refused,
    the learning rate checked, every other argument checked by ``lars_settings`` or
    ``lamb_settings``. ``take`` then sets them on the optimizer."""
    refuse_base_weight_decay(given["kwargs"], DECAY_FORMS[kind])
    check_learning_rate(given["learning_rate"])
    settings, names = ((lars_settings, LARS_SETTINGS) if kind == "lars" else
                       (lamb_settings, LAMB_SETTINGS))
    return settings(**arguments(given, names))


def take(optimizer, settings: dict) -> None:
    """Sets ``constructor_settings``' result on ``optimizer``, attribute by attribute."""
    for key, value in settings.items():
        setattr(optimizer, key, value)


def arguments(given: dict, names: Iterable[str]) -> dict:
    """The arguments ``names`` of a constructor's ``locals()``: what it passes on to
    ``lars_settings`` or ``lamb_settings``."""
    return {name: given[name] for name in names}


def settings_of(optimizer, names: Iterable[str]) -> dict:
    """``optimizer``'s settings ``names``, as plain Python for ``get_config()`` (a pattern
    list, which attribute tracking wraps, as a list)."""
    return {name: list(getattr(optimizer, name)) if name in PATTERNS else getattr(optimizer, name)
            for name in names}


def compile_patterns(patterns, argument: str) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        raise ValueError(
            f"{argument} must be a list of regular expressions, not a string. "
            f"Received: {argument}={patterns!r}; use [{patterns!r}]."
        )
    patterns = list(patterns)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ValueError(
                f"{argument} must hold regular-expression strings. Received: {pattern!r} "
                f"in {argument}={patterns!r}."
            )
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(
                f"{argument} holds an invalid regular expression {pattern!r}: {err}."
            ) from err
    return patterns


def exclusions(weight_decay, layer_adaptation) -> tuple[list[str], list[str]]:
    """The checked ``exclude_from_weight_decay`` and ``exclude_from_layer_adaptation``
    patterns; the second defaults to the first."""
    decay = compile_patterns(weight_decay, "exclude_from_weight_decay")
    if layer_adaptation is None:
        return decay, decay
    return decay, compile_patterns(layer_adaptation, "exclude_from_layer_adaptation")


def refuse_base_weight_decay(kwargs: dict, how: str) -> None:
    """The Keras base class's ``weight_decay`` is a separate, decoupled decay: refused, so
    that it cannot be mixed up with the optimizer's own ``weight_decay_rate``."""
    if kwargs.get("weight_decay"):  # the base config round-trips it as None or 0
        raise ValueError(
            f"{how}; pass it as weight_decay_rate=..., not weight_decay (the Keras base "
            f"class's decoupled decay). Received: weight_decay={kwargs['weight_decay']!r}.")


def check_learning_rate(learning_rate) -> None:
    if isinstance(learning_rate, (int, float)) and not learning_rate >= 0:
        raise ValueError(f"learning_rate must be >= 0 (or a LearningRateSchedule). "
                         f"Received: learning_rate={learning_rate!r}.")


def check_weight_decay_rate(weight_decay_rate) -> None:
    if not isinstance(weight_decay_rate, (int, float)) or not weight_decay_rate >= 0:
        raise ValueError(f"weight_decay_rate must be a float >= 0. "
                         f"Received: weight_decay_rate={weight_decay_rate!r}.")
