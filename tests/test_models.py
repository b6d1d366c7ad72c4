"""The model registry: shapes, parameter counts, and LARS's default exclusions."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from lars_hvd import models
from lars_hvd.errors import UsageError
from lars_hvd.optim.lars import LARS


def conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


def alexnet_params(batch_norm: bool, classes: int = 1000) -> int:
    convs = [(11, 3, 96), (5, 96, 256), (3, 256, 384), (3, 384, 384), (3, 384, 256)]
    total = sum(conv(k, i, o, not batch_norm) + (2 * o if batch_norm else 0)
                for k, i, o in convs)
    return total + (6 * 6 * 256 + 1) * 4096 + 4097 * 4096 + 4097 * classes


def cifar_resnet_params(depth: int, batch_norm: bool, classes: int = 10) -> int:
    """He et al.'s 6n + 2 family at widths 16, 32, 64 with projection shortcuts."""
    def conv_norm(k, cin, cout):
        return conv(k, cin, cout, not batch_norm) + (2 * cout if batch_norm else 0)
    total, width = conv_norm(3, 1, 16), 16
    for out in (16, 32, 64):
        for _ in range((depth - 2) // 6):
            total += conv_norm(3, width, out) + conv_norm(3, out, out)
            total += conv_norm(1, width, out) if width != out else 0
            width = out
    return total + 65 * classes


CASES = {
    # name: (input shape, classes, trainable parameters; BN moving statistics not counted)
    "resnet50": ((224, 224, 3), 1000, 25_557_032),  # ResNet-50's published count
    "alexnet_bn": ((227, 227, 3), 1000, alexnet_params(True)),
    "alexnet": ((227, 227, 3), 1000, alexnet_params(False)),
    "small_cnn_bn": ((28, 28, 1), 10, conv(3, 1, 16, False) + 2 * 16 + conv(3, 16, 32, False)
                     + 2 * 32 + 7 * 7 * 32 * 64 + 2 * 64 + 65 * 10),
    "small_cnn": ((28, 28, 1), 10, conv(3, 1, 16, True) + conv(3, 16, 32, True)
                  + (7 * 7 * 32 + 1) * 64 + 65 * 10),
    "resnet14_bn": ((28, 28, 1), 10, cifar_resnet_params(14, True)),
    "resnet14": ((28, 28, 1), 10, cifar_resnet_params(14, False)),
    "resnet20_bn": ((28, 28, 1), 10, cifar_resnet_params(20, True)),  # He et al.: 0.27M
    "resnet20": ((28, 28, 1), 10, cifar_resnet_params(20, False)),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request):
    name = request.param
    shape, classes, _ = CASES[name]
    return name, models.build(name, shape, classes)


def test_registry_has_every_model():
    assert models.names() == sorted(CASES)
    with pytest.raises(UsageError, match="unknown model 'vgg'"):
        models.build("vgg", (28, 28, 1), 10)


def test_output_shape_and_parameter_count(built):
    name, model = built
    shape, classes, params = CASES[name]
    assert models.input_shape(name) == shape  # the TensorFlow-free registry tells the truth
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert trainable == params
    out = model(np.zeros((2, *shape), np.float32), training=False)
    assert out.shape == (2, classes) and out.dtype == tf.float32


def test_default_lars_exclusions_are_exactly_bn_and_biases(built):
    _, model = built
    bn_or_bias = {v.name for v in model.trainable_variables
                  if re.search(r"(/bias|/gamma|/beta):0$", v.name)}
    excluded = {row["name"] for row in LARS(weight_decay_rate=1e-4).manifest(
        model.trainable_variables) if not row["layer_adaptation"]}
    no_decay = {row["name"] for row in LARS(weight_decay_rate=1e-4).manifest(
        model.trainable_variables) if not row["weight_decay"]}
    assert excluded == bn_or_bias == no_decay
    assert len(excluded) < len(model.trainable_variables)


def test_resnet50_is_v1_5():
    model = models.build("resnet50", (224, 224, 3), 1000)
    downsample = model.get_layer("stage2_block1_2_conv")  # the 3x3 conv carries the stride
    assert downsample.strides == (2, 2)
    assert model.get_layer("stage2_block1_1_conv").strides == (1, 1)


def test_small_resnets_start_as_the_identity_per_block():
    """Zero-init residual gamma: each block's branch outputs 0 at init, with BN."""
    model = models.build("resnet14_bn", (28, 28, 1), 10)
    last_bn = [layer for layer in model.layers if layer.name.endswith("_2_bn")]
    assert len(last_bn) == 6 and all(not np.any(layer.gamma.numpy()) for layer in last_bn)
    x = np.random.default_rng(0).random((2, 28, 28, 1), np.float32)
    branch = tf.keras.Model(model.input, model.get_layer("stage1_block1_2_bn").output)
    assert not np.any(branch(x, training=False).numpy())
    assert model.get_layer("stem_conv").strides == (2, 2)  # stages at 14, 7 and 4 pixels
    plain = models.build("resnet14", (28, 28, 1), 10)
    assert not any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in plain.layers)
    from lars_hvd.models.resnet_small import cifar_resnet

    with pytest.raises(ValueError, match="depth 15 is not 6n"):
        cifar_resnet(15)


def test_mixed_precision_logits_stay_float32():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = models.build("small_cnn_bn", (28, 28, 1), 10)
        assert model(np.zeros((1, 28, 28, 1), np.float32)).dtype == tf.float32
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
