"""Input pipeline speed: ImageNet-layout shards read, decoded and augmented by the real reader.

Without ``--data-dir`` it first writes ``--images`` JPEGs of ``--height`` x ``--width`` (default
500 x 375, ImageNet's most common size), smooth gradients plus noise so that they compress and
decode like photographs, as TFRecord shards in a temporary folder (through
``lars_hvd.data.make_tfrecords``). Then, for each recipe (ResNet's random-resized crop to
224, AlexNet's 227 crop, the evaluation center crop), it times ``--batches`` batches after
``--warmup`` untimed ones, for ``--rounds`` rounds, and reports images per second in total
and per core (tf.data uses every core the process has).

Whether that starves a GPU: the projected per-GPU ResNet-50 training speed of the scaling
model's DGX-1 profile (``lars_hvd.bench.scaling``) divided by the per-core rate is the number
of such cores each GPU needs for its input.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from lars_hvd.bench import results
from lars_hvd.planning import cost

RECIPES = {  # name: (model input size, training?, augment)
    "resnet-train-224": (224, True, "inception"),
    "alexnet-train-227": (227, True, "crop"),
    "eval-224": (224, False, "auto"),
}


def write_images(out: Path, images: int, height: int, width: int, shards: int) -> list[str]:
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
                           progress=False)
    return imagenet.list_shards(out, "train")


def _dataset(files, recipe: str, batch: int, examples: int):
    from lars_hvd.data import imagenet

    size, training, augment = RECIPES[recipe]
    options = imagenet.ReaderOptions(size=size, channels=3, num_classes=1000,
                                     augment=augment, shuffle_buffer=256)
    counter = tf.Variable(0, dtype=tf.int64)
    if training:
        return imagenet.train_dataset(files, options, examples_per_epoch=examples,
                                      batch_size=batch, initial_epoch=0, epochs=1,
                                      counter=counter)
    return imagenet.eval_dataset(files, options, rank=0, world_size=1, batch_size=batch,
                                 counter=counter).repeat()


def run(args) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_dir:
            from lars_hvd.data import imagenet

            files, source = imagenet.list_shards(args.data_dir, "train"), args.data_dir
        else:
            files = write_images(Path(tmp), args.images, args.height, args.width, args.shards)
            source = f"{args.images} generated {args.height}x{args.width} JPEGs"
        per_recipe = {}
        for recipe in RECIPES:
            needed = (args.warmup + args.batches * args.rounds) * args.batch
            iterator = iter(_dataset(files, recipe, args.batch, needed))
            for _ in range(args.warmup):
                next(iterator)
            rates = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                for _ in range(args.batches):
                    next(iterator)[0].numpy()
                rates.append(args.batches * args.batch / (time.perf_counter() - start))
            mean, ci = results.interval95(rates)
            per_recipe[recipe] = {"images_per_second": [mean, ci],
                                  "images_per_second_per_core": [mean / cores, ci / cores],
                                  "rounds": rates}
            print(f"input {recipe:>18}: {mean:8.1f} +-{ci:.1f} images/s, "
                  f"{mean / cores:.1f} per core ({cores} cores)", flush=True)
    gpu = 1 / cost.HARDWARE["dgx1-v100"].compute["resnet50"].per_example_seconds
    per_core = per_recipe["resnet-train-224"]["images_per_second_per_core"][0]
    return {"source": source, "cores": cores, "batch": args.batch, "recipes": per_recipe,
            "gpu_images_per_second": gpu, "cores_per_gpu_resnet": gpu / per_core}
