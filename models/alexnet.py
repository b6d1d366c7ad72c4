"""AlexNet (Krizhevsky et al. 2012, single tower) and AlexNet-BN (You, Gitman, Ginsburg 2017).

The LARS paper's AlexNet-BN replaces local response normalization with batch normalization
after every convolution; that is what lets it train at batch 8K. Plain ``alexnet`` here has
no normalization at all (no LRN either), the network the paper shows failing at large batch.
Input 227x227x3; about 61M parameters at 1000 classes (fc6 alone holds 37.7M).
"""

from __future__ import annotations

import tensorflow as tf

from .inputs import image_input

layers = tf.keras.layers

# (filters, kernel, strides, max-pool after)
CONVS = ((96, 11, 4, True), (256, 5, 1, True), (384, 3, 1, False), (384, 3, 1, False),
         (256, 3, 1, True))


def _alexnet(input_shape, num_classes, batch_norm, bn_momentum, dropout, name, pixels):
    inputs, x = image_input(input_shape, pixels)
    for i, (filters, kernel, strides, pool) in enumerate(CONVS, start=1):
        x = layers.Conv2D(filters, kernel, strides=strides,
                          padding="valid" if i == 1 else "same", use_bias=not batch_norm,
                          name=f"conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"conv{i}_bn")(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (6, 7):
        x = layers.Dense(4096, activation="relu", name=f"fc{i}")(x)
        x = layers.Dropout(dropout, name=f"drop{i}")(x)
    logits = layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return tf.keras.Model(inputs, logits, name=name)


def alexnet_bn(input_shape=(227, 227, 3), num_classes: int = 1000, *, bn_momentum: float = 0.9,
               dropout: float = 0.5, pixels: str = "float32") -> tf.keras.Model:
    """AlexNet with batch norm after each convolution (the LARS paper's AlexNet-BN)."""
    return _alexnet(input_shape, num_classes, True, bn_momentum, dropout, "alexnet_bn",
                    pixels)


def alexnet(input_shape=(227, 227, 3), num_classes: int = 1000, *, dropout: float = 0.5,
            bn_momentum: float = 0.9, pixels: str = "float32") -> tf.keras.Model:
    """AlexNet without normalization (``bn_momentum`` is accepted and unused)."""
    return _alexnet(input_shape, num_classes, False, bn_momentum, dropout, "alexnet", pixels)
