"""The reader's uint8 path against the float path it replaced: the same crops and
flips, the same pixels within rounding (exactly, for the crop recipe on pre-sized images), a
stated bound where DCT scaling changes them; the model's normalization; the converter's
``--shorter-side`` and the start-up check of the stored size."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from test_imagenet import smooth_image

from lars_hvd import models
from lars_hvd.data import make_tfrecords, pipeline, preprocess
from lars_hvd.errors import UsageError

pytestmark = pytest.mark.core

SEEDS = [tf.constant([s, 7 * s + 1], tf.int64) for s in range(8)]


def jpeg(height, width, seed=0):
    out = io.BytesIO()
    Image.fromarray(smooth_image(np.random.default_rng(seed), height, width)).save(
        out, format="JPEG", quality=95)
    return tf.constant(out.getvalue())


def old_pixels(image, channels=3):
    """The float path's normalized output, back in [0, 255] and rounded."""
    mean, std = preprocess.mean_std(channels)
    return np.round(image.numpy() * np.array(std) + np.array(mean))


def differences(new, old):
    diff = np.abs(new.numpy().astype(np.int64) - old)
    return diff.max(), diff.mean()


NO_BOX = tf.zeros([1, 0, 4])


@pytest.mark.parametrize("shape", [(375, 500), (300, 400), (256, 341), (500, 300), (200, 240)])
@pytest.mark.parametrize("augment,size", [("inception", 224), ("crop", 227)])
def test_training_pixels_are_the_float_paths_rounded(shape, augment, size):
    encoded = jpeg(*shape)
    for seed in SEEDS:
        new = preprocess.train_pixels(encoded, NO_BOX, seed, size=size, channels=3,
                                      augment=augment)
        old = old_pixels(preprocess.train_image(encoded, NO_BOX, seed, size=size, channels=3,
                                                augment=augment))
        assert new.dtype == tf.uint8 and new.shape == (size, size, 3)
        worst, mean = differences(new, old)
        if augment == "crop" and min(shape) == 256:  # the crop itself, decoded alone
            assert worst == 0, (shape, seed)
        else:  # (resized values a hair from .5 may round the other way)
            assert worst <= 1 and mean < 0.02, (shape, seed, worst, mean)


@pytest.mark.parametrize("shape", [(375, 500), (256, 341), (200, 240)])
def test_evaluation_pixels_are_the_float_paths_rounded(shape):
    encoded = jpeg(*shape)
    new = preprocess.eval_pixels(encoded, size=224, channels=3)
    old = old_pixels(preprocess.eval_image(encoded, size=224, channels=3))
    worst, mean = differences(new, old)
    assert worst <= 1 and mean < 0.02


def test_grey_pixels_are_the_float_paths_rounded():
    encoded = jpeg(300, 400)
    for augment, size in (("inception", 224), ("crop", 227), ("crop", 28)):
        new = preprocess.train_pixels(encoded, NO_BOX, SEEDS[1], size=size, channels=1,
                                      augment=augment)
        old = old_pixels(preprocess.train_image(encoded, NO_BOX, SEEDS[1], size=size,
                                                channels=1, augment=augment), channels=1)
        assert new.shape == (size, size, 1)
        assert differences(new, old)[0] <= 1, augment


def test_dct_scale_is_the_largest_that_keeps_the_models_size(monkeypatch):
    ratios = []
    decode = tf.image.decode_and_crop_jpeg

    def spy(contents, window, channels=0, ratio=1, **kw):
        ratios.append(ratio)
        return decode(contents, window, channels=channels, ratio=ratio, **kw)

    monkeypatch.setattr(tf.image, "decode_and_crop_jpeg", spy)
    encoded = jpeg(1000, 1400)
    for side, ratio in ((447, 1), (448, 2), (895, 2), (896, 4), (1000, 4)):
        ratios.clear()
        image = preprocess._resized_window(encoded, tf.constant([0, 20, side, side]), 224)
        assert image.shape == (224, 224, 3)
        assert ratios == [ratio], side


def test_dct_scaled_crops_stay_within_a_stated_bound():
    """Crops of at least 448 px decode at 1/2 (1/4, 1/8) scale and are sampled at the same
    positions as the full-scale resize; the DCT's filter replaces skipped pixels. Bound: on
    average within 2.5 levels of the float path, and as close as it to an antialiased resize
    of the full decode (within 2.5 levels)."""
    encoded = jpeg(1000, 1400)
    to_old, to_filtered = [], []
    for seed in SEEDS:
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        window = preprocess.inception_window(encoded, NO_BOX, crop_seed)
        if min(int(window[2]), int(window[3])) < 448:
            continue  # decoded at full scale: the float path's pixels (tested above)
        new = preprocess.train_pixels(encoded, NO_BOX, seed, size=224, channels=3,
                                      augment="inception").numpy().astype(np.float64)
        old = old_pixels(preprocess.train_image(encoded, NO_BOX, seed, size=224, channels=3,
                                                augment="inception"))
        pixels = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
        filtered = tf.image.resize(tf.image.stateless_random_flip_left_right(
            pixels, seed=flip_seed), [224, 224], antialias=True).numpy()
        to_old.append(np.abs(new - old).mean())
        to_filtered.append(np.abs(new - filtered).mean())
    assert len(to_old) >= 3, "too few crops of 448 px or more to compare"
    assert max(to_old) < 2.5 and max(to_filtered) < 2.5, (to_old, to_filtered)


def test_a_uint8_model_normalizes_as_the_float_path_did():
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype(np.uint8)
    uint8 = models.build("small_cnn_bn", (28, 28, 1), 10, pixels="uint8")
    floats = models.build("small_cnn_bn", (28, 28, 1), 10)
    assert uint8.input.dtype == tf.uint8 and len(uint8.weights) == len(floats.weights)
    floats.set_weights(uint8.get_weights())
    np.testing.assert_allclose(uint8(x, training=False),
                               floats(preprocess.normalize(x, 1), training=False), atol=1e-5)
    rgb = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    mean, std = preprocess.mean_std(3)
    np.testing.assert_allclose(preprocess.normalize(rgb, 3), (rgb - np.array(mean))
                               / np.array(std), rtol=1e-5, atol=1e-5)


# -- pre-sized shards -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sized_source(tmp_path_factory):
    """One class: a 375x500 JPEG, a 300x200 JPEG, a 250x600 PNG."""
    root = tmp_path_factory.mktemp("sized")
    (root / "n1").mkdir()
    rng = np.random.default_rng(3)
    for name, (h, w) in (("a.jpg", (375, 500)), ("b.jpg", (300, 200)), ("c.png", (250, 600))):
        Image.fromarray(smooth_image(rng, h, w)).save(root / "n1" / name, quality=90)
    return root


def stored(out):
    rows = {}
    for record in tf.data.TFRecordDataset([str(p) for p in sorted(out.glob("train-*"))]):
        example = tf.io.parse_single_example(record, {
            "image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/filename": tf.io.FixedLenFeature([], tf.string),
            "image/height": tf.io.FixedLenFeature([], tf.int64),
            "image/width": tf.io.FixedLenFeature([], tf.int64)})
        decoded = tf.io.decode_jpeg(example["image/encoded"]).shape[:2]
        rows[example["image/filename"].numpy().decode()] = (
            (int(example["image/height"]), int(example["image/width"])), tuple(decoded),
            example["image/encoded"].numpy())
    return rows


def test_converter_stores_the_shorter_side_and_records_it(sized_source, tmp_path, capsys):
    out = tmp_path / "sized"
    assert make_tfrecords.main([str(sized_source), str(out), "--shards", "1",
                                "--shorter-side", "256"]) == 0
    assert "2 image(s) already at or below 256 px stored as they are" in capsys.readouterr().out
    rows = stored(out)
    assert rows["a.jpg"][:2] == ((256, 341), (256, 341))
    assert rows["b.jpg"][:2] == ((300, 200), (300, 200))  # shorter side 200: never upscaled
    assert rows["b.jpg"][2] == (sized_source / "n1" / "b.jpg").read_bytes()
    assert rows["c.png"][:2] == ((250, 600), (250, 600))
    assert json.loads((out / "dataset.json").read_text())["shorter_side"] == {"train": 256}
    originals = tmp_path / "originals"
    assert make_tfrecords.main([str(sized_source), str(originals), "--shards", "1"]) == 0
    assert json.loads((originals / "dataset.json").read_text())["shorter_side"] == {
        "train": None}
    assert stored(originals)["a.jpg"][:2] == ((375, 500), (375, 500))


@pytest.mark.parametrize("value", ["0", "-3"])
def test_converter_refuses_a_shorter_side_below_one(sized_source, tmp_path, capsys, value):
    out = tmp_path / "bad"
    assert make_tfrecords.main([str(sized_source), str(out), "--shards", "1",
                                "--shorter-side", value]) == 2
    assert f"--shorter-side must be a positive number of pixels (got {value})" in \
        capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


def test_a_shorter_side_above_the_originals_stores_them_as_they_are(sized_source, tmp_path,
                                                                     capsys):
    out = tmp_path / "big"
    assert make_tfrecords.main([str(sized_source), str(out), "--shards", "1",
                                "--shorter-side", "4096"]) == 0
    assert "3 image(s) already at or below 4096 px" in capsys.readouterr().out
    rows = stored(out)
    assert rows["a.jpg"][2] == (sized_source / "n1" / "a.jpg").read_bytes()
    assert json.loads((out / "dataset.json").read_text())["shorter_side"] == {"train": 4096}


def test_start_up_refuses_images_stored_smaller_than_the_models_crops(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"shorter_side": {"train": 256, "validation": 128}}))
    pipeline.check_stored_size(tmp_path, 28)  # a 28 px model crops from 32 px
    with pytest.raises(UsageError, match=r"stores validation images pre-sized to a shorter "
                       r"side of 128 px .* less than the 256 px that a 224-pixel model's "
                       r"crops are taken from; rewrite them with .*--split validation "
                       r"--shorter-side 256 --overwrite"):
        pipeline.check_stored_size(tmp_path, 224)
    (tmp_path / "dataset.json").write_text(json.dumps({"shorter_side": {"train": None}}))
    pipeline.check_stored_size(tmp_path, 227)
    (tmp_path / "dataset.json").unlink()
    pipeline.check_stored_size(tmp_path, 227)
