"""Write ImageNet-layout TFRecord shards from a folder of class subfolders (or Fashion-MNIST).

    python -m lars_hvd.data.make_tfrecords SRC OUT --shards 1024 --split train
    python -m lars_hvd.data.make_tfrecords VAL_SRC OUT --shards 128 --split validation
    python -m lars_hvd.data.make_tfrecords default OUT --source fashion-mnist --shards 8
    python -m lars_hvd.data.make_tfrecords SRC OUT --shards 1024 --shorter-side 256

SRC holds one subfolder per class with JPEG or PNG images. Classes are numbered 1..K in
sorted order (the ``image/class/label`` convention of ``build_imagenet_data.py``; the reader
subtracts ``--label-offset 1``); the class list is kept in ``OUT/dataset.json``, and a second
split written into the same OUT reuses it, so train and validation labels agree.
Examples are shuffled (seed 0) so every shard mixes the classes, and written as
``OUT/{split}-{i:05d}-of-{N:05d}`` with the standard features. RGB JPEGs are stored as they
are; any other image (PNG, grey, CMYK) is converted to an RGB JPEG (quality 95).

``--shorter-side N`` stores pre-sized images: each image whose shorter side is longer than N
pixels is resized (Pillow's antialiased Lanczos filter, aspect ratio kept) so that its
shorter side is N, and re-encoded as a quality-95 JPEG; an image already at or below N is
stored as it is (never upscaled) and counted. N goes into ``dataset.json`` (``shorter_side``,
per split) and the reader refuses a model whose crops need more (``lars_hvd.data.pipeline``).
That is the form the paper's Caffe trained from (256-pixel LMDBs) and what FFCV's
``max_resolution`` does; the reader decodes about half the pixels of a 500x375 original.

Shards are written in parallel threads, each to a hidden temporary name and renamed when
complete, so no half-written shard ever carries a final name; ``dataset.json`` is written
last. An existing set of the same split is never overwritten without ``--overwrite``.
An unreadable source image is skipped and reported (``--on-bad-image error`` stops instead).

``--source fashion-mnist`` reads the IDX files (SRC ``default``: Debian's folder) and writes
the 28x28 grey images as RGB JPEGs, classes 1..10, so the real parser runs on real pixels.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lars_hvd.data import MANIFEST
from lars_hvd.data.imagenet import SHARD_NAME, SPLITS
from lars_hvd.errors import UsageError, report
from lars_hvd.files import atomic_write_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal",
                         "shirt", "sneaker", "bag", "ankle boot")
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Item:
    """One example to write: where its pixels come from, and its class."""

    name: str  # image/filename
    label: int  # 1..K
    synset: str
    text: str
    path: str | None = None  # a source image file, or
    pixels: np.ndarray | None = None  # an in-memory uint8 image (Fashion-MNIST)


def folder_items(src: Path, classes: list[str] | None) -> tuple[list[Item], list[str]]:
    """The images of ``src/<class>/``; ``classes`` fixes the numbering (None: sorted)."""
    if not src.is_dir():
        raise UsageError(f"SRC {src} is not a directory of class subfolders.")
    found = sorted(p.name for p in src.iterdir() if p.is_dir())
    if not found:
        raise UsageError(f"SRC {src} has no class subfolders (expected SRC/<class>/*.jpg).")
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise UsageError(
            f"SRC {src} has classes that the set in OUT does not: {unknown[:5]}; write this "
            f"split into a new OUT, or use the same class folders as the first split."
        )
    items = []
    for label, name in enumerate(classes, start=1):
        folder = src / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                items.append(Item(name=path.name, label=label, synset=name, text=name,
                                  path=str(path)))
    if not items:
        raise UsageError(f"SRC {src} has no images ({', '.join(IMAGE_SUFFIXES)}).")
    return items, classes


def fashion_mnist_items(src: str, split: str, max_examples: int | None
                        ) -> tuple[list[Item], list[str]]:
    from lars_hvd.data import fashion_mnist

    x, y = fashion_mnist.load("train" if split == "train" else "test",
                              None if src == "default" else src)
    count = len(x) if max_examples is None else min(max_examples, len(x))
    x = np.round(x[:count] * 255).astype(np.uint8)  # load() gives floats in [0, 1]
    classes = [f"fashion-mnist-{i}" for i in range(10)]
    items = [Item(name=f"{split}-{i:05d}.jpg", label=int(y[i]) + 1, synset=classes[int(y[i])],
                  text=FASHION_MNIST_CLASSES[int(y[i])],
                  pixels=np.repeat(x[i].reshape(28, 28, 1), 3, axis=2))
             for i in range(count)]
    return items, classes


def encode(item: Item, shorter_side: int | None = None) -> tuple[bytes, int, int, bool]:
    """(RGB JPEG bytes, height, width, resized?) of one item, its shorter side brought down to
    ``shorter_side`` if it is longer; raises ValueError if unreadable."""
    from PIL import Image

    if item.pixels is not None:
        image = Image.fromarray(item.pixels.astype(np.uint8), "RGB")
        raw = None
    else:
        raw = Path(item.path).read_bytes()
        try:
            image = Image.open(io.BytesIO(raw))
            image.load()
        except Exception as err:  # Pillow raises many kinds for a broken file
            raise ValueError(f"{item.path}: not a readable image ({err})") from err
    resized = shorter_side is not None and min(image.size) > shorter_side
    if resized:
        scale = shorter_side / min(image.size)
        new = tuple(max(shorter_side, round(side * scale)) for side in image.size)
        image = image.convert("RGB").resize(new, Image.Resampling.LANCZOS)
    elif raw is not None and image.format == "JPEG" and image.mode == "RGB":
        return raw, image.height, image.width, False
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), image.height, image.width, resized


def example_bytes(item: Item, image: bytes, height: int, width: int) -> bytes:
    import tensorflow as tf

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()
                                                                     if isinstance(v, str)
                                                                     else v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    empty_float = tf.train.Feature(float_list=tf.train.FloatList(value=[]))
    features = {
        "image/encoded": b(image), "image/format": b("JPEG"), "image/height": i(height),
        "image/width": i(width), "image/channels": i(3), "image/colorspace": b("RGB"),
        "image/filename": b(item.name), "image/class/label": i(item.label),
        "image/class/synset": b(item.synset), "image/class/text": b(item.text),
        "image/object/bbox/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[])),
    }
    for key in ("xmin", "ymin", "xmax", "ymax"):
        features[f"image/object/bbox/{key}"] = empty_float
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def shard_name(split: str, index: int, shards: int) -> str:
    return f"{split}-{index:05d}-of-{shards:05d}"


def write_shard(items: list[Item], path: Path, on_bad_image: str,
                shorter_side: int | None = None) -> tuple[int, list[str], int]:
    """Writes one shard atomically. Returns (examples written, skipped-image messages,
    images stored as they were although ``shorter_side`` was asked for)."""
    import tensorflow as tf

    partial = path.with_name(f".{path.name}.partial")
    written, skipped, kept = 0, [], 0
    try:
        with tf.io.TFRecordWriter(str(partial)) as writer:
            for item in items:
                try:
                    image, height, width, resized = encode(item, shorter_side)
                except ValueError as err:
                    if on_bad_image == "error":
                        raise UsageError(f"{err} (--on-bad-image error; --on-bad-image skip "
                                         f"skips and counts such images)") from err
                    skipped.append(str(err))
                    continue
                writer.write(example_bytes(item, image, height, width))
                written += 1
                kept += shorter_side is not None and not resized
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return written, skipped, kept


def check_shorter_side(shorter_side: int | None) -> None:
    if shorter_side is not None and shorter_side < 1:
        raise UsageError(f"--shorter-side must be a positive number of pixels (got "
                         f"{shorter_side}); 256 is what the paper's Caffe trained from, or "
                         f"leave it out to store the originals.")


def existing_shards(out: Path, split: str) -> list[Path]:
    return sorted(p for p in out.iterdir()
                  if (m := SHARD_NAME.match(p.name)) and m.group(1) == split)


def convert(items: list[Item], classes: list[str], out: Path, split: str, shards: int,
            *, workers: int, on_bad_image: str, overwrite: bool, source: str,
            progress: bool = True, shorter_side: int | None = None) -> dict:
    """Writes ``items`` as ``shards`` shards of ``split`` in ``out`` (pre-sized to
    ``shorter_side`` if given); returns the manifest."""
    check_shorter_side(shorter_side)
    if shards < 1:
        raise UsageError(f"--shards must be >= 1 (got {shards}).")
    if shards > len(items):
        raise UsageError(f"--shards {shards} is more than the {len(items)} examples; "
                         f"use at most {len(items)}.")
    out.mkdir(parents=True, exist_ok=True)
    old = existing_shards(out, split)
    if old and not overwrite:
        raise UsageError(
            f"{out} already has {len(old)} {split} shard(s) ({old[0].name}, ...); pass "
            f"--overwrite to replace them, or choose another OUT."
        )
    order = list(range(len(items)))
    random.Random(0).shuffle(order)  # mix the classes in every shard
    parts = [[items[j] for j in order[k::shards]] for k in range(shards)]
    names = [out / shard_name(split, k, shards) for k in range(shards)]
    import tensorflow as tf

    bar = tf.keras.utils.Progbar(shards, unit_name="shard") if progress else None
    written, skipped, kept = 0, [], 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(write_shard, part, name, on_bad_image, shorter_side)
                   for part, name in zip(parts, names, strict=True)]
        for done, future in enumerate(as_completed(futures), start=1):
            count, bad, small = future.result()
            written, skipped, kept = written + count, skipped + bad, kept + small
            if bar:
                bar.update(done)
    for stale in old:  # a replaced set with another shard count
        if stale not in names:
            stale.unlink()
    manifest = _update_manifest(out, split, written, classes, source, shorter_side)
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    sized = ""
    if shorter_side is not None:
        sized = f", shorter side {shorter_side} px"
        if kept:
            sized += (f" ({kept} image(s) already at or below {shorter_side} px stored as they "
                      f"are, never upscaled)")
    print(f"{split}: {written} examples in {shards} shards in {out}{sized}"
          f"{f'; {len(skipped)} unreadable image(s) skipped' if skipped else ''}")
    return manifest


def _update_manifest(out: Path, split: str, examples: int, classes: list[str],
                     source: str, shorter_side: int | None) -> dict:
    path = out / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest.update({"format": "imagenet-tfrecord", "classes": len(classes),
                     "class_names": classes, "label_offset": 1, split: examples})
    manifest.setdefault("sources", {})[split] = source
    # (None: the originals' sizes; an int: no stored image has a longer shorter side)
    manifest.setdefault("shorter_side", {})[split] = shorter_side
    atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lars_hvd.data.make_tfrecords",
        description="Write ImageNet-layout TFRecord shards from class subfolders of images "
                    "(or from Fashion-MNIST).")
    parser.add_argument("src", help="folder of class subfolders; with --source fashion-mnist "
                                    "the IDX folder, or 'default' for Debian's")
    parser.add_argument("out", help="output folder (created if needed)")
    parser.add_argument("--shards", type=int, required=True, help="number of shards")
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--source", choices=("folders", "fashion-mnist"), default="folders")
    parser.add_argument("--max-examples", type=int, default=None,
                        help="fashion-mnist: write only the first N examples")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="parallel writer threads (default: the CPU count)")
    parser.add_argument("--on-bad-image", choices=("skip", "error"), default="skip")
    parser.add_argument("--shorter-side", type=int, default=None, metavar="N",
                        help="store each image resized so that its shorter side is N pixels "
                             "(never upscaled); default: the originals")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing set of this split in OUT")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    manifest_path = out / MANIFEST
    known = None
    if manifest_path.is_file():
        known = json.loads(manifest_path.read_text()).get("class_names")
    if args.max_examples is not None and args.max_examples < 1:
        return report(UsageError(f"--max-examples must be >= 1 (got {args.max_examples})."),
                      "make_tfrecords")
    try:
        check_shorter_side(args.shorter_side)
        if args.source == "fashion-mnist":
            items, classes = fashion_mnist_items(args.src, args.split, args.max_examples)
        else:
            items, classes = folder_items(Path(args.src), known)
        convert(items, classes, out, args.split, args.shards, workers=args.workers,
                on_bad_image=args.on_bad_image, overwrite=args.overwrite,
                source=args.source, shorter_side=args.shorter_side)
    except UsageError as err:
        return report(err, "make_tfrecords")
    return 0


if __name__ == "__main__":
    sys.exit(main())
