"""The ImageNet reader's decode stage as it was before uint8 pixels, kept so that ``bench input``
measures today's path against it side by side, in one run, on the same shards.

It differs from ``lars_hvd.data.imagenet._clean`` in how a record's errors are caught: a
dataset per record (the decode inside it, its errors ignored, followed by the fallback), and
the checks after it, one record at a time. With ``ReaderOptions(pixels="float32")`` (the
normalized floats of ``preprocess.train_image``, and the crop recipe decoding and resizing
the whole image) it is the reader of before. (The one change: the line naming a bad record
is now built only for bad records; it was built for every record.)
"""

from __future__ import annotations

import tensorflow as tf

from lars_hvd.data import imagenet, preprocess


def _decoded(options: imagenet.ReaderOptions, training: bool, epoch):
    size, channels = options.size, options.channels
    augment = preprocess.recipe(options.augment, size)
    train_fn, eval_fn = ((preprocess.train_pixels, preprocess.eval_pixels)
                         if options.pixels == "uint8" else
                         (preprocess.train_image, preprocess.eval_image))

    def decode(record, path, index):
        image_bytes, label, bbox = imagenet._parse(record)
        if training:
            seed = imagenet._example_seed(options.seed, epoch, path, index)
            image = train_fn(image_bytes, bbox, seed, size=size, channels=channels,
                             augment=augment)
        else:
            image = eval_fn(image_bytes, size=size, channels=channels)
        return image, label, tf.constant(imagenet.OK)

    def element(path, index, record, read, file_size):
        is_end = index < 0
        good = (tf.data.Dataset.from_tensors(record)
                .filter(lambda _: tf.logical_not(is_end))
                .map(lambda r: decode(r, path, index))
                .ignore_errors())
        status = tf.where(is_end, tf.where(tf.equal(read, file_size), imagenet.END,
                                           imagenet.BAD_SHARD), imagenet.BAD_RECORD)
        fallback = tf.data.Dataset.from_tensors(
            (tf.zeros([size, size, channels], options.pixels), tf.constant(-1, tf.int64),
             status))
        return (good.concatenate(fallback).take(1)
                .map(lambda image, label, s: (image, label, s, path, index, read, file_size)))

    return element


def clean(options: imagenet.ReaderOptions, counter, training: bool):
    """``imagenet._clean`` as it was: decoded per record in parallel, checked in order (and
    traced for each epoch)."""
    def stage(records: tf.data.Dataset, epoch: int = 0) -> tf.data.Dataset:
        checked = (records
                   .interleave(_decoded(options, training, epoch), cycle_length=16,
                               num_parallel_calls=tf.data.AUTOTUNE,
                               deterministic=options.deterministic or not training)
                   .map(imagenet._accounting(options, counter)))
        return checked.filter(lambda image, label, status: tf.equal(status, imagenet.OK)).map(
            lambda image, label, status: (image, label))

    return stage
