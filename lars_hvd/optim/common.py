"""What LARS and LAMB share: the checked exclusion patterns, argument checks, the L2 norm.

TensorFlow only; nothing here knows of Horovod or of lars_hvd's configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import tensorflow as tf


def l2_norm(tensor):
    # One fused pass over the tensor (tf.nn.l2_loss = sum(x**2) / 2), no temporary the size
    # of the tensor: the norms are LARS's only extra memory traffic over SGD.
    return tf.sqrt(2.0 * tf.nn.l2_loss(tensor))


def handle(variable):
    """The resource handle of a variable (through a mixed-precision AutoCastVariable)."""
    return getattr(variable, "_variable", variable).handle


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


def patterns_match(patterns: Iterable[str], variable) -> bool:
    """Whether a regular expression of ``patterns`` is found in ``variable.name``."""
    return any(re.search(pattern, variable.name) for pattern in patterns)
