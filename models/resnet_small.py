"""ResNets for 28x28 inputs: He et al. 2016's CIFAR family (section 4.2), sized for a CPU.

Depth 6n + 2: a 3x3 stem, three stages of n basic blocks (two 3x3 convolutions each) at 16,
32 and 64 channels, global average pooling and the classifier; ``resnet20_bn`` is n = 3,
``resnet14_bn`` n = 2. Two changes from the paper's CIFAR nets, both for CPU cost: the stem
strides by 2, so the stages run at 14x14, 7x7 and 4x4 (a third of the time of a stride-1
stem here, which the 28x28 input of Fashion-MNIST affords), and shortcuts that change shape
are 1x1 projections (the paper's option B). With batch norm, each block's last BN gamma starts
at 0 (Goyal et al. 2017), so every block starts as the identity. Without batch norm
(``resnet14``, ``resnet20``) the convolutions get biases instead and the same He-normal init;
nothing else stands in for the normalization (no Fixup), which is the point of the variant.
"""

from __future__ import annotations

import tensorflow as tf

from .inputs import image_input
from .small import BN_MOMENTUM

layers = tf.keras.layers
WIDTHS = (16, 32, 64)


def _conv(x, filters, strides, name, *, batch_norm, bn_momentum, relu=True, zero_gamma=False):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=not batch_norm,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn",
                                      gamma_initializer="zeros" if zero_gamma else "ones")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _block(x, filters, strides, name, *, batch_norm, bn_momentum):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=not batch_norm,
                                 kernel_initializer="he_normal", name=f"{name}_proj")(x)
        if batch_norm:
            shortcut = layers.BatchNormalization(momentum=bn_momentum,
                                                 name=f"{name}_proj_bn")(shortcut)
    y = _conv(x, filters, strides, f"{name}_1", batch_norm=batch_norm, bn_momentum=bn_momentum)
    y = _conv(y, filters, 1, f"{name}_2", batch_norm=batch_norm, bn_momentum=bn_momentum,
              relu=False, zero_gamma=True)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def cifar_resnet(depth: int, input_shape=(28, 28, 1), num_classes: int = 10, *,
                 batch_norm: bool = True, bn_momentum: float = BN_MOMENTUM,
                 pixels: str = "float32") -> tf.keras.Model:
    """A depth-``depth`` (6n + 2) ResNet of the CIFAR family; float32 logits."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth {depth} is not 6n + 2 with n >= 1 (e.g. 14, 20, 32)")
    blocks = (depth - 2) // 6
    name = f"resnet{depth}" + ("_bn" if batch_norm else "")
    inputs, x = image_input(input_shape, pixels)
    x = _conv(x, WIDTHS[0], 2, "stem", batch_norm=batch_norm, bn_momentum=bn_momentum)
    for stage, filters in enumerate(WIDTHS):
        for block in range(blocks):
            x = _block(x, filters, 2 if stage > 0 and block == 0 else 1,
                       f"stage{stage + 1}_block{block + 1}", batch_norm=batch_norm,
                       bn_momentum=bn_momentum)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return tf.keras.Model(inputs, logits, name=name)


def _registered(depth: int, batch_norm: bool):
    """The registry's builder for one depth, with or without BN (the registry's signature;
    without BN, ``bn_momentum`` is accepted and unused)."""
    def build(input_shape=(28, 28, 1), num_classes: int = 10, *,
              bn_momentum: float = BN_MOMENTUM, pixels: str = "float32") -> tf.keras.Model:
        return cifar_resnet(depth, input_shape, num_classes, batch_norm=batch_norm,
                            bn_momentum=bn_momentum, pixels=pixels)

    build.__name__ = build.__qualname__ = f"resnet{depth}" + ("_bn" if batch_norm else "")
    return build


resnet14_bn = _registered(14, batch_norm=True)
resnet20_bn = _registered(20, batch_norm=True)
resnet14 = _registered(14, batch_norm=False)
resnet20 = _registered(20, batch_norm=False)
