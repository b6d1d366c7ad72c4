"""ResNet-50 v1.5 (He et al. 2016; the v1.5 variant of NVIDIA/MLPerf).

v1.5 differs from the original v1 (and from ``tf.keras.applications.ResNet50``) in where a
downsampling bottleneck strides: on its 3x3 convolution instead of its first 1x1. That costs
a little speed and gains about 0.5% top-1; it is the network of the MLPerf LARS runs.
25,557,032 parameters at 1000 classes.
"""

from __future__ import annotations

import tensorflow as tf

from .inputs import image_input

layers = tf.keras.layers

# Stages of ResNet-50: (bottleneck width, blocks); output channels are 4x the width.
RESNET50_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))


def _conv_bn(x, filters, kernel, strides, name, *, bn_momentum, relu=True, zero_gamma=False):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(
        momentum=bn_momentum, epsilon=1e-5, name=f"{name}_bn",
        gamma_initializer="zeros" if zero_gamma else "ones",
    )(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _bottleneck(x, width, strides, name, *, bn_momentum, zero_init_residual):
    shortcut = x
    if strides != 1 or x.shape[-1] != 4 * width:
        shortcut = _conv_bn(x, 4 * width, 1, strides, f"{name}_proj", bn_momentum=bn_momentum,
                            relu=False)
    y = _conv_bn(x, width, 1, 1, f"{name}_1", bn_momentum=bn_momentum)
    y = _conv_bn(y, width, 3, strides, f"{name}_2", bn_momentum=bn_momentum)  # v1.5: stride here
    y = _conv_bn(y, 4 * width, 1, 1, f"{name}_3", bn_momentum=bn_momentum, relu=False,
                 zero_gamma=zero_init_residual)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def resnet50(input_shape=(224, 224, 3), num_classes: int = 1000, *, bn_momentum: float = 0.9,
             zero_init_residual: bool = True, name: str = "resnet50_v1_5",
             pixels: str = "float32") -> tf.keras.Model:
    """ResNet-50 v1.5 for ``input_shape`` images and ``num_classes`` logits (float32).

    Args:
      bn_momentum: batch-norm moving-average momentum (0.9, as MLPerf's reference).
      zero_init_residual: start each block's last BN gamma at 0 (Goyal et al. 2017), so every
        residual block begins as the identity; it helps large-batch warmup.
      pixels: the input's dtype (``lars_hvd.models.inputs``).
    """
    inputs, x = image_input(input_shape, pixels)
    x = _conv_bn(x, 64, 7, 2, "stem", bn_momentum=bn_momentum)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (width, blocks) in enumerate(RESNET50_STAGES):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _bottleneck(x, width, strides, f"stage{stage + 1}_block{block + 1}",
                            bn_momentum=bn_momentum, zero_init_residual=zero_init_residual)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = layers.Dense(num_classes, kernel_initializer=tf.keras.initializers.RandomNormal(
        stddev=0.01), name="logits", dtype="float32")(x)
    return tf.keras.Model(inputs, logits, name=name)
