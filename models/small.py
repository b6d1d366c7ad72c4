"""Small CNNs for 28x28 inputs, small enough to train on a laptop's CPU."""

from __future__ import annotations

import tensorflow as tf

from .inputs import image_input

layers = tf.keras.layers

# Keras's default BN momentum (0.99) averages over ~100 steps; a large-batch run on
# Fashion-MNIST has a few dozen, and its moving statistics then still describe the early
# weights at test time. 0.9 averages over ~10 steps.
BN_MOMENTUM = 0.9


def _small_cnn(input_shape, num_classes, batch_norm, bn_momentum, name, pixels):
    def norm_act(x, prefix):
        if batch_norm:
            x = layers.BatchNormalization(momentum=bn_momentum, name=f"{prefix}_bn")(x)
        return layers.ReLU(name=f"{prefix}_relu")(x)

    inputs, x = image_input(input_shape, pixels)
    # Strided convolutions in place of conv + max-pool (the all-convolutional net of
    # Springenberg et al. 2015): same parameters, a quarter of the activations, which is
    # what a memory-bound CPU run pays for.
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=not batch_norm,
                      name="conv1")(x)
    x = norm_act(x, "conv1")
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=not batch_norm,
                      name="conv2")(x)
    x = norm_act(x, "conv2")
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, use_bias=not batch_norm, name="fc1")(x)
    x = norm_act(x, "fc1")
    logits = layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return tf.keras.Model(inputs, logits, name=name)


def small_cnn_bn(input_shape=(28, 28, 1), num_classes: int = 10, *,
                 bn_momentum: float = BN_MOMENTUM, pixels: str = "float32") -> tf.keras.Model:
    """conv16/2-BN, conv32/2-BN, dense64-BN, dense10: 106,202 parameters at 28x28x1."""
    return _small_cnn(input_shape, num_classes, True, bn_momentum, "small_cnn_bn", pixels)


def small_cnn(input_shape=(28, 28, 1), num_classes: int = 10, *,
              bn_momentum: float = BN_MOMENTUM, pixels: str = "float32") -> tf.keras.Model:
    """The same network without batch norm (biases instead): 105,866 parameters.

    ``bn_momentum`` is accepted (one signature for the registry) and unused.
    """
    return _small_cnn(input_shape, num_classes, False, bn_momentum, "small_cnn", pixels)
