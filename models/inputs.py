"""The input layer every model starts from, for the two kinds of input the pipelines give.

``float32`` (Fashion-MNIST, synthetic data, and the ImageNet reader's ``pixels="float32"``):
the model takes the tensor as it comes. ``uint8`` (the ImageNet reader's default): the model
takes the cropped pixels and normalizes them itself, with ImageNet's mean and standard
deviation (``lars_hvd.data.preprocess.normalize``), so that the host hands the accelerator a
quarter of the bytes and the subtraction and division run there, not on the input cores
(as NVIDIA's DALI pipelines do with ``crop_mirror_normalize`` on the GPU).
"""

from __future__ import annotations

import tensorflow as tf

from lars_hvd.data import preprocess

PIXELS = ("float32", "uint8")


def image_input(input_shape, pixels: str = "float32"):
    """``(the model's Input, the tensor its first layer takes)``."""
    if pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {PIXELS} (got {pixels!r}).")
    inputs = tf.keras.Input(input_shape, name="image", dtype=pixels)
    if pixels == "float32":
        return inputs, inputs
    mean, std = preprocess.mean_std(input_shape[-1])
    # (no weights: the constants are in the config, and checkpoints are unchanged by it)
    x = tf.keras.layers.Normalization(mean=list(mean), variance=[s * s for s in std],
                                      name="normalize")(inputs)
    return inputs, x
