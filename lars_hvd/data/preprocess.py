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

Two outputs, the same crops and flips (``docs/imagenet.md``, "Input speed"):

- ``train_pixels`` / ``eval_pixels`` (the reader's default): ``uint8`` of shape ``(size, size,
  channels)``, the resized pixels rounded; the model normalizes them (``models.inputs``, on
  the GPU). The crop recipe decodes only the rows and columns its 227 px crop samples and
  resizes only the crop (``crop_and_resize`` at the sampling positions of resizing the whole
  image: the same pixels within 1/255 by rounding); a crop that is at least twice the model's
  size on both sides is decoded at a reduced DCT scale (1/2, 1/4, 1/8), which filters
  instead of skipping pixels (at 500x375 it never applies to a 224 px crop).
- ``train_image`` / ``eval_image``: ``float32`` normalized with ImageNet's RGB mean and
  standard deviation on the CPU (grey models get the luminance, normalized with the means'
  mean): the path before uint8 pixels, for models that expect normalized floats.
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
    mean, std = mean_std(channels)
    lows = [(0 - m) / s for m, s in zip(mean, std, strict=True)]
    highs = [(255 - m) / s for m, s in zip(mean, std, strict=True)]
    return min(lows), max(highs)


def mean_std(channels: int):
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
    mean, std = mean_std(channels)
    image = (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
    image.set_shape([size, size, channels])
    return image


def inception_window(image_bytes, bbox, seed):
    """The random-resized crop's ``[y, x, h, w]``: 8-100% of the area, aspect 3/4-4/3, at
    least 10% of the labelled box (if any)."""
    begin, window_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([image_shape(image_bytes), [3]], 0),
        bounding_boxes=bbox, seed=seed, min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], window_size[0], window_size[1]])


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
        window = inception_window(image_bytes, bbox, crop_seed)
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
    window = _center_window(image_bytes, size)
    return _finish(tf.cast(_decode_window(image_bytes, window), tf.float32), size, channels)


def _center_window(image_bytes, size: int):
    shape = image_shape(image_bytes)
    fraction = size / resize_side(size)
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * fraction, tf.int32)
    side = tf.maximum(side, 1)
    return tf.stack([(shape[0] - side + 1) // 2, (shape[1] - side + 1) // 2, side, side])


def _full_window(image_bytes):
    shape = image_shape(image_bytes)
    return tf.stack([0, 0, shape[0], shape[1]])


def _resize_shorter_side(image, side: int):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = side / tf.minimum(shape[0], shape[1])
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    return tf.image.resize(image, tf.maximum(new, side), method="bilinear")


# -- uint8 output (the reader's default) ------------------------------------------------------

DCT_RATIOS = (1, 2, 4, 8)  # the scales libjpeg decodes at (decode_and_crop_jpeg's ``ratio``)


def to_pixels(image, channels: int):
    """Resized ``float32`` RGB in [0, 255] -> ``uint8``, grey if ``channels`` is 1."""
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _resized_window(image_bytes, window, size: int):
    """The ``[y, x, h, w]`` window resized to ``size`` x ``size`` (bilinear, ``float32``).
    A JPEG window at least twice ``size`` on both sides is decoded at the smallest DCT scale
    1/r that keeps it so, and sampled where resizing the full-scale window would sample
    (``crop_and_resize``): the same geometry, the DCT's filter instead of skipped pixels."""
    def resize(pixels):
        return tf.image.resize(pixels, [size, size], method="bilinear", antialias=False)

    def full_scale():  # (any format)
        return resize(_decode_window(image_bytes, window))

    def jpeg_full_scale():  # (known to be a JPEG: no second format check)
        return resize(tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3))

    def at(ratio):
        def scaled():
            start = window[:2] // ratio
            stop = (window[:2] + window[2:] + ratio - 1) // ratio
            pixels = tf.image.decode_and_crop_jpeg(
                image_bytes, tf.concat([start, stop - start], 0), channels=3, ratio=ratio)
            step = tf.cast(window[2:], tf.float32) / size  # full-scale pixels per output
            first = (tf.cast(window[:2], tf.float32) + 0.5 * step) / ratio - 0.5 \
                - tf.cast(start, tf.float32)
            last = first + (size - 1) * step / ratio
            extent = tf.cast(tf.maximum(stop - start - 1, 1), tf.float32)
            box = tf.concat([first / extent, last / extent], 0)
            return tf.image.crop_and_resize(tf.cast(pixels, tf.float32)[None], box[None], [0],
                                            [size, size], method="bilinear")[0]
        return scaled

    def jpeg():
        shorter = tf.minimum(window[2], window[3])
        index = tf.zeros([], tf.int32)
        for i in range(1, len(DCT_RATIOS)):
            index = tf.where(shorter >= DCT_RATIOS[i] * size, i, index)
        return tf.switch_case(index, [jpeg_full_scale] + [at(r) for r in DCT_RATIOS[1:]])

    return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, full_scale)


def _pixels(image, size: int, channels: int):
    image = to_pixels(image, channels)
    image.set_shape([size, size, channels])
    return image


def _crop_offset(shape, size: int, seed):
    """The ``[y, x]`` of ``stateless_random_crop(image of shape, [size, size, 3], seed)``."""
    limit = tf.concat([shape - size + 1, [1]], 0)
    offset = tf.random.stateless_uniform([3], seed=seed, maxval=tf.int32.max,
                                         dtype=tf.int32) % limit
    return offset[:2]


JPEG_MARGIN = 16  # pixels: one 4:2:0 MCU


def _with_margin(low, high, shape):
    """The ``[y, x, h, w]`` window of rows and columns ``[low, high)`` widened by
    ``JPEG_MARGIN`` on every side (within ``shape``), and where ``low`` falls inside it.
    (libjpeg upsamples chroma at a window's edge without the pixels beyond it, so a crop's
    border columns would differ from the whole image's by a few levels; the margin keeps
    the crop's pixels those of the whole decode.)"""
    start = tf.maximum(low - JPEG_MARGIN, 0)
    end = tf.minimum(high + JPEG_MARGIN, shape)
    return tf.concat([start, end - start], 0), low - start


def _crop_recipe_pixels(image_bytes, size: int, seed):
    """The crop recipe (shorter side to 256, a random ``size`` crop), decoding and resizing
    only what the crop samples. The offset is ``stateless_random_crop``'s over the resized
    shape; the samples are those of ``tf.image.resize`` (half-pixel centers)."""
    side = resize_side(size)
    shape = image_shape(image_bytes)
    shape_f = tf.cast(shape, tf.float32)
    scale = side / tf.minimum(shape_f[0], shape_f[1])
    resized = tf.maximum(tf.cast(tf.math.ceil(shape_f * scale), tf.int32), side)
    offset = _crop_offset(resized, size, seed)

    def same_size():  # a pre-sized image: the crop itself, decoded alone
        window, inner = _with_margin(offset, offset + size, shape)
        return tf.slice(_decode_window(image_bytes, window), tf.concat([inner, [0]], 0),
                        [size, size, 3])

    def smaller():  # sample only the window the crop's bilinear taps touch
        step = shape_f / tf.cast(resized, tf.float32)  # input pixels per output pixel
        first = (tf.cast(offset, tf.float32) + 0.5) * step - 0.5
        last = first + (size - 1) * step
        window, _ = _with_margin(tf.cast(tf.floor(first), tf.int32),
                                 tf.cast(tf.math.ceil(last), tf.int32) + 1, shape)
        low = tf.cast(window[:2], tf.float32)
        extent = tf.cast(tf.maximum(window[2:] - 1, 1), tf.float32)  # crop_and_resize's unit
        box = tf.concat([(first - low) / extent, (last - low) / extent], 0)
        pixels = tf.cast(_decode_window(image_bytes, window), tf.float32)
        crop = tf.image.crop_and_resize(pixels[None], box[None], [0], [size, size],
                                        method="bilinear")[0]
        return to_pixels(crop, 3)

    def larger():  # an image below 256 px: upscaled whole, as train_image does
        image = _resize_shorter_side(_decode_window(image_bytes, _full_window(image_bytes)),
                                     side)
        return to_pixels(tf.slice(image, tf.concat([offset, [0]], 0), [size, size, 3]), 3)

    return tf.case([(tf.reduce_all(tf.equal(resized, shape)), same_size),
                    (tf.reduce_all(resized < shape), smaller)], default=larger)


def train_pixels(image_bytes, bbox, seed, *, size: int, channels: int, augment: str):
    """``train_image``'s crop and flip as ``uint8`` pixels (the arguments are the same)."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if augment == "inception":
        window = inception_window(image_bytes, bbox, crop_seed)
        # (flipped after the resize, which is mirror-symmetric: the same pixels)
        image = tf.image.stateless_random_flip_left_right(
            _resized_window(image_bytes, window, size), seed=flip_seed)
        return _pixels(image, size, channels)
    if augment == "crop":
        image = tf.image.stateless_random_flip_left_right(
            _crop_recipe_pixels(image_bytes, size, crop_seed), seed=flip_seed)
        if channels == 1:
            image = to_pixels(tf.cast(image, tf.float32), 1)
        image.set_shape([size, size, channels])
        return image
    raise ValueError(f"augment must be 'inception' or 'crop' (got {augment!r}).")


def eval_pixels(image_bytes, *, size: int, channels: int):
    """``eval_image``'s center crop as ``uint8`` pixels."""
    return _pixels(_resized_window(image_bytes, _center_window(image_bytes, size), size),
                   size, channels)


def normalize(pixels, channels: int, dtype=tf.float32):
    """``uint8`` pixels -> the normalized input ``train_image`` gives (in the model)."""
    mean, std = mean_std(channels)
    image = tf.cast(pixels, dtype)
    return (image - tf.constant(mean, dtype)) / tf.constant(std, dtype)
