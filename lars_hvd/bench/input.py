"""Input pipeline speed: ImageNet-layout shards read, decoded and augmented by the real reader,
the originals beside pre-sized shards, side by side in one run.

Without ``--data-dir`` it writes ``--images`` JPEGs of ``--height`` x ``--width`` (default
500 x 375, ImageNet's most common size), smooth gradients plus noise so that they compress and
decode like photographs, twice: as they are, and pre-sized to a shorter side of 256 px
(``make_tfrecords --shorter-side 256``). For each recipe (ResNet's random-resized crop to 224,
AlexNet's 227 crop, the evaluation center crop) and each path -- ``now`` (the reader) on the
originals and ``now-256`` on the pre-sized shards -- it reads one iterator to its steady state
(``lars_hvd.bench.steady``: ``--warmup`` untimed batches, then ``--windows`` windows of
``--batches`` batches, the first, which reads what was buffered, left out); the paths
take turns in every round (the order rotating), for ``--rounds`` rounds. Reported: medians
over rounds of images/s per core (wall time, all of the process's cores busy: tf.data uses
every core it has) and per CPU-second (the process's CPU time), the median of each round's
ratio to ``now``, and how steady the windows were. (Results made before the reader's uint8
pixels also hold ``before``, the reader of then, and ratios to it: ``summary`` renders both.)

Whether that starves a GPU: a profile's published per-GPU training rate (``lars_hvd.planning.
cost``; ResNet-50 for the inception recipe, AlexNet-BN for the crop recipe) divided by the
per-core rate is the number of such cores each GPU needs for its input.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from lars_hvd.bench import steady, summary

RECIPES = {  # name: (model input size, training?, augment)
    "resnet-train-224": (224, True, "inception"),
    "alexnet-train-227": (227, True, "crop"),
    "eval-224": (224, False, "auto"),
}


def write_images(out: Path, images: int, height: int, width: int, shards: int,
                 shorter_side: int | None = None) -> list[str]:
    from lars_hvd.data import imagenet, make_tfrecords
    from lars_hvd.data.make_tfrecords import Item

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    items = []
    for i in range(images):
        fx, fy = 20 + 60 * rng.random(3), 20 + 60 * rng.random(3)
        pixels = np.stack([np.sin(x / fx[c] + i) * np.cos(y / fy[c]) for c in range(3)], -1)
        pixels = pixels * 100 + 128 + rng.normal(0, 8, pixels.shape)
        items.append(Item(name=f"{i}.jpg", label=i % 1000 + 1, synset="s", text="t",
                          pixels=np.clip(pixels, 0, 255).astype(np.uint8)))
    make_tfrecords.convert(items, ["s"], out, "train", shards, workers=os.cpu_count() or 1,
                           on_bad_image="error", overwrite=True, source="bench",
                           progress=False, shorter_side=shorter_side)
    return imagenet.list_shards(out, "train")


PATHS = {"now": "originals", "now-256": "pre-sized"}  # path: the shards it reads
BASELINE = "now"  # each path's ratio is to this one's rate, round by round


def _dataset(files, recipe: str, batch: int, examples: int):
    from lars_hvd.data import imagenet

    size, training, augment = RECIPES[recipe]
    options = imagenet.ReaderOptions(size=size, channels=3, num_classes=1000,
                                     augment=augment, shuffle_buffer=256, pixels="uint8")
    counter = tf.Variable(0, dtype=tf.int64)
    if training:
        return imagenet.train_dataset(files, options, examples_per_epoch=examples,
                                      batch_size=batch, initial_epoch=0, epochs=1,
                                      counter=counter)
    return imagenet.eval_dataset(files, options, rank=0, world_size=1, batch_size=batch,
                                 counter=counter).repeat()


def examples_read(args) -> int:
    """The most images one measurement reads (warm-up and every window)."""
    return (args.warmup + args.windows * args.batches) * args.batch


def _one_pass(files: list[str], args) -> list[str]:
    """The generated set's shards, listed as often as one pass over them all must hold
    ``examples_read`` images: the reader reads more shards (as from ImageNet's 1,024) instead
    of starting over at the end of the set, which would time its restart."""
    return files if args.data_dir else files * math.ceil(examples_read(args) / args.images)


def _steady(dataset: tf.data.Dataset, args) -> steady.Steady:
    """One iterator of ``dataset``, read to its steady state; it ends on return (no
    prefetching in the background while the next path is timed)."""
    return steady.measure(iter(dataset), batch=args.batch, window=args.batches,
                          warmup=args.warmup, windows=args.windows, tolerance=args.tolerance)


def _measure(files, recipe: str, args) -> steady.Steady:
    return _steady(_dataset(_one_pass(files, args), recipe, args.batch, examples_read(args)),
                   args)


def _decode_only(files, batch: int, examples: int) -> tf.data.Dataset:
    """The AlexNet crop's JPEG decode alone (its window: the 227 px crop's span in the
    original, widened by ``preprocess.JPEG_MARGIN``, at the center): no crop position, resize,
    flip, checks or shuffle. Its rate bounds the recipe's from above on original JPEGs."""
    from lars_hvd.data import imagenet, preprocess

    def decode(record):
        image_bytes = tf.io.parse_single_example(
            record, {"image/encoded": imagenet.FEATURES["image/encoded"]})["image/encoded"]
        shape = tf.image.extract_jpeg_shape(image_bytes)[:2]
        span = tf.cast(tf.cast(tf.reduce_min(shape), tf.float32) * 227 / preprocess.CROP_RESIZE,
                       tf.int32) + 2 * preprocess.JPEG_MARGIN
        side = tf.minimum(span, tf.reduce_min(shape))
        window = tf.concat([(shape - side) // 2, [side, side]], 0)
        return tf.shape(tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3))

    return (tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE)
            .map(decode, num_parallel_calls=tf.data.AUTOTUNE).take(examples)
            .batch(batch).prefetch(tf.data.AUTOTUNE))


def _measure_decode(files, args) -> steady.Steady:
    return _steady(_decode_only(_one_pass(files, args), args.batch, examples_read(args)), args)


def measure(args) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_dir:
            from lars_hvd.data import imagenet

            shards = {"originals": imagenet.list_shards(args.data_dir, "train")}
            paths = ["now"]
            source = args.data_dir
        else:
            shards = {"originals": write_images(Path(tmp) / "originals", args.images,
                                                args.height, args.width, args.shards),
                      "pre-sized": write_images(Path(tmp) / "sized", args.images, args.height,
                                                args.width, args.shards, shorter_side=256)}
            paths = list(PATHS)
            source = f"{args.images} generated {args.height}x{args.width} JPEGs"
        per_recipe, per_core, decode = {}, {}, []
        for recipe in RECIPES:
            measured = {p: [] for p in paths}
            for round_ in range(args.rounds):
                for path in paths[round_ % len(paths):] + paths[:round_ % len(paths)]:
                    measured[path].append(_measure(shards[PATHS[path]], recipe, args))
                if recipe == "alexnet-train-227" and not args.data_dir:
                    decode.append(_measure_decode(shards["originals"], args))
            per_recipe[recipe] = {path: _row(measured[path], measured[BASELINE], cores)
                                  for path in paths}
            for path, row in per_recipe[recipe].items():
                print(f"input {recipe:>17} {path:>8}: {row['per_core']:7.1f} images/s per core "
                      f"({cores} cores), {row['per_cpu_second']:7.1f} per CPU-second, "
                      f"{row['ratio_to_now']:.2f}x now; {row['steadiness']}", flush=True)
            per_core[recipe] = {path: row["per_core"] for path, row in per_recipe[recipe].items()}
        decode_only = _row(decode, decode, cores) if decode else None
        if decode_only:
            print(f"input alexnet-train-227 JPEG decode of its window alone, originals: "
                  f"{decode_only['per_core']:7.1f} images/s per core, "
                  f"{decode_only['per_cpu_second']:7.1f} per CPU-second; "
                  f"{decode_only['steadiness']}", flush=True)
    needs = summary.cores_per_gpu(per_core)
    for name, recipes in needs.items():
        for recipe, need in recipes.items():
            text = ", ".join(f"{path} {n:.1f}" for path, n in need["needed"].items())
            print(f"cores a GPU needs, {name} ({need['gpu_images_per_second']:,.0f} img/s a GPU,"
                  f" {need['cores_per_gpu']:g} cores a GPU), {recipe}: {text}", flush=True)
    return {"source": source, "cores": cores, "batch": args.batch, "paths": paths,
            "baseline": BASELINE,
            "window_batches": args.batches, "windows": args.windows,
            "warmup_batches": args.warmup, "tolerance": args.tolerance,
            "recipes": per_recipe, "alexnet_decode_only": decode_only}


def _row(rounds: list[steady.Steady], base: list[steady.Steady], cores: int) -> dict:
    """One path's result over its rounds (``base``: the same rounds of the baseline path)."""
    rates = [r.rate for r in rounds]
    worst = max(rounds, key=lambda r: r.buffered)
    return {"per_core": median(rates) / cores,
            "per_cpu_second": median([r.per_cpu_second for r in rounds]),
            f"ratio_to_{BASELINE}": median([a.rate / b.rate
                                            for a, b in zip(rounds, base, strict=True)]),
            "rounds": rates, "windows": [list(r.windows) for r in rounds],
            "steady": all(r.steady for r in rounds), "buffered": worst.buffered,
            "steadiness": f"{sum(r.steady for r in rounds)} of {len(rounds)} rounds steady, "
                          f"the least {worst.describe()}"}


def median(values: list[float]) -> float:
    return float(np.median(values))
