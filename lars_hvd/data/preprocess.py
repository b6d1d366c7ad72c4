"""ImageNet image preprocessing: decode, crop, flip, normalize (one example at a time).

Three recipes, chosen by ``--augment`` (``auto``: by the model's input size):

- ``inception`` (ResNet, 224 px): a random crop covering 8-100% of the image area with an
  aspect ratio in [3/4, 4/3] (and at least 10% of the labelled box, if the record has one),
  resized to the model's size, then a random horizontal flip ("random-resized crop").
- ``crop`` (AlexNet, 227 px): the shorter side resized to 256, a random square crop of the
  model's size, a random flip.
- evaluation, for both: the central ``size/256`` of the shorter side resized to ``size``,
  which is "resize the shorter side to 256, center-crop 224" done in one decode.

The 256 is for models of 224 px and up; a smaller model (the 28 px CPU nets) uses
``size * 256 / 224`` (32 for 28 px).

JPEGs are decoded only inside the crop window (``decode_and_crop_jpeg``); other formats are
decoded whole. Randomness is stateless and keyed per example on (seed, epoch, file, record),
so the augmentation of an example does not depend on thread timing or on the worker count.
Output: ``float32`` of shape ``(size, size, channels)``, normalized with ImageNet's RGB mean
and standard deviation (grey models get the luminance, normalized with the means' mean).
"""

from __future__ import annotations

import tensorflow as tf

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
AUGMENTS = ("auto", "inception", "crop")
CROP_RESIZE = 256  # the "crop" recipe's shorter side, and the evaluation's reference side


def resize_side(size: int) -> int:
    """The shorter side that crops of ``size`` are taken from (256 for 224 and 227 px)."""
    return max(size, CROP_RESIZE) if size >= 224 else round(size * CROP_RESIZE / 224)


def recipe(augment: str, size: int) -> str:
    """The training recipe: ``auto`` is ``crop`` for AlexNet's 227 px, else ``inception``."""
    if augment not in AUGMENTS:
        raise ValueError(f"--augment must be one of {AUGMENTS} (got {augment!r}).")
    if augment == "auto":
        return "crop" if size == 227 else "inception"
    return augment


def value_range(channels: int) -> tuple[float, float]:
    """The smallest and largest value a normalized pixel can take."""
    mean, std = _mean_std(channels)
    lows = [(0 - m) / s for m, s in zip(mean, std, strict=True)]
    highs = [(255 - m) / s for m, s in zip(mean, std, strict=True)]
    return min(lows), max(highs)


def _mean_std(channels: int):
    if channels == 3:
        return MEAN_RGB, STDDEV_RGB
    return (sum(MEAN_RGB) / 3,), (sum(STDDEV_RGB) / 3,)


def _decode_window(image_bytes, window):
    """Decodes the ``[y, x, h, w]`` window of an encoded image, RGB ``uint8``."""
    def jpeg():
        return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)

    def other():
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2],
                                             window[3])

    return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)


def image_shape(image_bytes):
    """``[height, width]`` of an encoded image (JPEG: from its header, no decode)."""
    def jpeg():
        return tf.image.extract_jpeg_shape(image_bytes)[:2]

    def other():
        return tf.shape(tf.io.decode_image(image_bytes, channels=3,
                                           expand_animations=False))[:2]

    return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)


def _finish(image, size: int, channels: int):
    """Resize (if needed) to ``size`` x ``size``, convert channels, normalize."""
    image = tf.image.resize(image, [size, size], method="bilinear", antialias=False)
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    mean, std = _mean_std(channels)
    image = (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    image.set_shape([size, size, channels])
    return image


def train_image(image_bytes, bbox, seed, *, size: int, channels: int, augment: str):
    """One augmented training image.

    Args:
      image_bytes: the encoded image (a scalar string tensor).
      bbox: ``[1, n, 4]`` float boxes ``(ymin, xmin, ymax, xmax)`` in [0, 1]; n may be 0.
      seed: an ``int32`` ``[2]`` tensor, this example's stateless seed.
      size, channels: the model's input.
      augment: ``inception`` or ``crop`` (see the module docstring).
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if augment == "inception":
        begin, window_size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.concat([image_shape(image_bytes), [3]], 0),
            bounding_boxes=bbox, seed=crop_seed, min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        window = tf.stack([begin[0], begin[1], window_size[0], window_size[1]])
        image = _decode_window(image_bytes, window)
    elif augment == "crop":
        image = _decode_window(image_bytes, _full_window(image_bytes))
        image = _resize_shorter_side(image, resize_side(size))
        image = tf.image.stateless_random_crop(image, [size, size, 3], seed=crop_seed)
    else:
        raise ValueError(f"augment must be 'inception' or 'crop' (got {augment!r}).")
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return _finish(tf.cast(image, tf.float32), size, channels)


def eval_image(image_bytes, *, size: int, channels: int):
    """The evaluation image: the center ``size/256`` of the shorter side, resized to size."""
    shape = image_shape(image_bytes)
    fraction = size / resize_side(size)
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * fraction, tf.int32)
    side = tf.maximum(side, 1)
    window = tf.stack([(shape[0] - side + 1) // 2, (shape[1] - side + 1) // 2, side, side])
    return _finish(tf.cast(_decode_window(image_bytes, window), tf.float32), size, channels)


def _full_window(image_bytes):
    shape = image_shape(image_bytes)
    return tf.stack([0, 0, shape[0], shape[1]])


def _resize_shorter_side(image, side: int):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = side / tf.minimum(shape[0], shape[1])
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    return tf.image.resize(image, tf.maximum(new, side), method="bilinear")
