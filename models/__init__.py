"""Model definitions, installed as ``lars_hvd.models``: the one registry of model names.

The registry says, without importing TensorFlow, which models exist, their input shapes and
where their builders live, so that planning (``--dry-run``) needs no TensorFlow. Every
builder takes ``(input_shape, num_classes, *, bn_momentum, pixels)`` and returns a Keras model
whose output is float32 logits (also under a mixed-precision policy); ``pixels="uint8"`` makes
it take uint8 pixels and normalize them itself (``lars_hvd.models.inputs``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from lars_hvd.errors import UsageError


@dataclass(frozen=True)
class ModelInfo:
    input_shape: tuple[int, int, int]  # (height, width, channels) the network was made for
    builder: str  # "module:function" inside this package
    about: str


REGISTRY: dict[str, ModelInfo] = {
    "resnet50": ModelInfo((224, 224, 3), "resnet:resnet50", "ResNet-50 v1.5"),
    "alexnet_bn": ModelInfo((227, 227, 3), "alexnet:alexnet_bn",
                            "the LARS paper's AlexNet-BN"),
    "alexnet": ModelInfo((227, 227, 3), "alexnet:alexnet", "AlexNet, no normalization"),
    "small_cnn_bn": ModelInfo((28, 28, 1), "small:small_cnn_bn", "106K-parameter CNN, BN"),
    "small_cnn": ModelInfo((28, 28, 1), "small:small_cnn", "the same CNN without BN"),
    "resnet14_bn": ModelInfo((28, 28, 1), "resnet_small:resnet14_bn",
                             "ResNet-14 of He et al.'s CIFAR family, 28x28, BN"),
    "resnet14": ModelInfo((28, 28, 1), "resnet_small:resnet14", "the same ResNet-14 without BN"),
    "resnet20_bn": ModelInfo((28, 28, 1), "resnet_small:resnet20_bn",
                             "ResNet-20 of He et al.'s CIFAR family, 28x28, BN"),
    "resnet20": ModelInfo((28, 28, 1), "resnet_small:resnet20", "the same ResNet-20 without BN"),
}


def names() -> list[str]:
    return sorted(REGISTRY)


def info(name: str) -> ModelInfo:
    if name not in REGISTRY:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(names())}.")
    return REGISTRY[name]


def input_shape(name: str) -> tuple[int, int, int]:
    return info(name).input_shape


def build(name: str, input_shape, num_classes: int, *, bn_momentum: float = 0.9,
          pixels: str = "float32"):
    """Builds the registered model ``name`` (imports TensorFlow)."""
    module, function = info(name).builder.split(":")
    builder = getattr(importlib.import_module(f"{__name__}.{module}"), function)
    return builder(tuple(input_shape), num_classes, bn_momentum=bn_momentum, pixels=pixels)
