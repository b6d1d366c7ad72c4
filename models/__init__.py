"""Model definitions, installed as ``lars_hvd.models``: a registry from name to builder.

Every builder takes ``(input_shape, num_classes, *, bn_momentum)`` and returns a Keras model
whose output is float32 logits (also under a mixed-precision policy).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from .alexnet import alexnet, alexnet_bn
from .resnet import resnet50
from .small import small_cnn, small_cnn_bn

REGISTRY: dict[str, Callable[..., tf.keras.Model]] = {
    "resnet50": resnet50,  # v1.5, 224x224x3
    "alexnet_bn": alexnet_bn,  # the LARS paper's AlexNet-BN, 227x227x3
    "alexnet": alexnet,  # no normalization
    "small_cnn_bn": small_cnn_bn,  # 28x28, batch norm
    "small_cnn": small_cnn,  # 28x28, no batch norm
}


def names() -> list[str]:
    return sorted(REGISTRY)


def build(name: str, input_shape, num_classes: int, *, bn_momentum: float = 0.9
          ) -> tf.keras.Model:
    """Builds the registered model ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown model {name!r}; choose one of {names()}.")
    return REGISTRY[name](tuple(input_shape), num_classes, bn_momentum=bn_momentum)
