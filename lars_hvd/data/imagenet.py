"""ImageNet from TFRecord shards in the layout of ``build_imagenet_data.py``.

``DIR/train-00000-of-01024`` ... and ``DIR/validation-00000-of-00128`` ..., each record a
``tf.train.Example`` with ``image/encoded`` (JPEG), ``image/class/label`` (1..1000) and the
other standard features (``lars_hvd.data.make_tfrecords`` writes them). An optional
``DIR/dataset.json`` (written by the converter) gives the example and class counts of a set
that is not ImageNet itself.

Sharding: worker ``r`` of ``n`` reads training shards ``r, r + n, ...``, so the shard count
must be a multiple of the worker count. Each epoch every worker reads its shards once, in an
order keyed on (seed, epoch), through a shuffle buffer, and takes exactly the examples its
micro-batches need (``plan.micro_steps_per_epoch * plan.per_worker_batch``): across workers
every example is read at most once per epoch, and all of them when the global batch divides
the set. Evaluation reads every validation example exactly once across workers (by shard if
there are at least as many shards as workers, else by record) and counts exactly.

Bad data never stops a run silently or hangs it:

- an undecodable image or a record that is not a parseable Example is skipped, counted and
  printed (file and record), up to ``--max-bad-records`` per worker, or with
  ``--bad-records error`` stops the run naming the file and record;
- a shard whose framing is corrupt (CRC) or truncated counts as one bad record, found by
  comparing the bytes read with the file's size (TF's reader ends such a file early, and
  silently if it is truncated);
- a label outside ``[label_offset, label_offset + classes)`` stops the run naming the file;
- a directory without matching shards, a missing shard, or a shard count that cannot be
  split among the workers is an error before training starts.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from lars_hvd.data import preprocess
from lars_hvd.errors import UsageError

SPLITS = ("train", "validation")
SHARD_NAME = re.compile(r"^(train|validation)-(\d{5})-of-(\d{5})$")
_FRAME_BYTES = 16  # TFRecord framing per record: length (8), its CRC (4), the data's CRC (4)

PIXELS = ("uint8", "float32")

# Status of one element on its way through the reader.
OK, BAD_RECORD, BAD_SHARD, END = 0, 1, 2, 3

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
}


@dataclass(frozen=True)
class ReaderOptions:
    """How a worker reads: everything but the file list and the plan."""

    size: int  # the model's square input side
    channels: int  # the model's input channels (3, or 1 for grey models)
    num_classes: int
    label_offset: int = 1  # subtracted from image/class/label (ImageNet: 1..1000 -> 0..999)
    augment: str = "auto"  # see lars_hvd.data.preprocess
    shuffle_buffer: int = 4096  # records, per worker
    cache: str | None = None  # None, "memory", or a file prefix: cache this worker's records
    bad_records: str = "skip"  # "skip" (count, up to max_bad_records) or "error"
    max_bad_records: int = 100  # per worker per run
    deterministic: bool = False  # the same order and augmentation on every rerun
    seed: int = 0
    # "uint8": pixels, which the model normalizes (models.inputs); "float32": normalized here
    pixels: str = "uint8"


# -- files ----------------------------------------------------------------------------------

def list_shards(data_dir: str | Path, split: str, required: bool = True) -> list[str]:
    """The ``split`` shards of ``data_dir``, sorted; a clear error if any is missing, or if
    there are none and ``required`` (else an empty list)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}.")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir} is not a directory; point it at the folder "
                         f"of the TFRecord shards.")
    found = {}
    for path in data_dir.iterdir():
        match = SHARD_NAME.match(path.name)
        if match and match.group(1) == split:
            found[path.name] = (int(match.group(2)), int(match.group(3)))
    if not found and not required:
        return []
    if not found:
        raise UsageError(
            f"no {split} shards in {data_dir}: expected files named {split}-00000-of-NNNNN "
            f"(the layout of build_imagenet_data.py). Write them with `python -m "
            f"lars_hvd.data.make_tfrecords SRC {data_dir}`."
        )
    totals = {total for _, total in found.values()}
    if len(totals) != 1:
        raise UsageError(f"{data_dir} mixes {split} sets of {sorted(totals)} shards; keep one.")
    total = totals.pop()
    missing = sorted(set(range(total)) - {index for index, _ in found.values()})
    if missing:
        names = ", ".join(f"{split}-{i:05d}-of-{total:05d}" for i in missing[:5])
        raise UsageError(
            f"{data_dir} has {len(found)} of the {total} {split} shards; missing: {names}"
            f"{' ...' if len(missing) > 5 else ''}."
        )
    return [str(data_dir / name) for name in sorted(found)]


def train_files_for_rank(files: list[str], rank: int, world_size: int) -> list[str]:
    """Worker ``rank``'s training shards: every ``world_size``-th, from ``rank``."""
    count = len(files)
    if count < world_size or count % world_size:
        fits = [n for n in range(1, min(count, 64) + 1) if count % n == 0]
        raise UsageError(
            f"{count} training shards cannot be split evenly among {world_size} workers (each "
            f"worker reads whole shards, so the workers would read different numbers of "
            f"examples). Run on a worker count that divides {count} (e.g. "
            f"{', '.join(map(str, fits[-6:]))}), or re-shard with `python -m "
            f"lars_hvd.data.make_tfrecords ... --shards M` for M a multiple of {world_size}."
        )
    return files[rank::world_size]


# -- records --------------------------------------------------------------------------------

def _file_records(path, size):
    """Every record of one shard as ``(path, index, record, bytes_read)``, then one END
    element ``(path, -1, "", bytes_read)``: the reader ends a file at a corrupt frame (or
    silently at a truncated one), which the END element shows as bytes_read != size."""
    records = tf.data.TFRecordDataset(path).ignore_errors().enumerate()
    records = records.concatenate(tf.data.Dataset.from_tensors(
        (tf.constant(-1, tf.int64), tf.constant(b""))))

    def count(read, item):
        index, record = item
        frame = tf.where(index >= 0, tf.cast(tf.strings.length(record), tf.int64) + _FRAME_BYTES,
                         tf.constant(0, tf.int64))
        read = read + frame
        return read, (path, index, record, read, size)

    return records.scan(tf.constant(0, tf.int64), count)


def _records(files: list[str], cycle_length: int, deterministic: bool,
             order_seed=None) -> tf.data.Dataset:
    """The records of ``files`` (in ``order_seed``'s shuffled order, if given), interleaved."""
    sizes = [tf.io.gfile.stat(f).length for f in files]
    paths, lengths = tf.constant(files), tf.constant(sizes, tf.int64)
    if order_seed is not None:
        order = tf.random.experimental.stateless_shuffle(tf.range(len(files)), seed=order_seed)
        paths, lengths = tf.gather(paths, order), tf.gather(lengths, order)
    return tf.data.Dataset.from_tensor_slices((paths, lengths)).interleave(
        _file_records, cycle_length=max(1, min(cycle_length, len(files))),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _parse(record):
    example = tf.io.parse_single_example(record, FEATURES)
    boxes = [tf.sparse.to_dense(example[f"image/object/bbox/{k}"])
             for k in ("ymin", "xmin", "ymax", "xmax")]
    bbox = tf.reshape(tf.stack(boxes, axis=-1), [1, -1, 4])
    return example["image/encoded"], example["image/class/label"], bbox


def _example_seed(seed: int, epoch, path, index):
    """A stateless seed per (run seed, epoch, file, record)."""
    file_key = tf.strings.to_hash_bucket_fast(path, 2**31 - 1)
    return tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64),
                     file_key * 1_000_003 + index])


CHUNK = 32  # records decoded by one inner dataset (at most 63: its slots are int64 bits)


def _first_in_slot(mask, element):
    """``scan`` over a chunk's examples, then its placeholders: whether ``element`` is the
    first of its slot (a decoded record is; its placeholder, after it, is not)."""
    bit = tf.bitwise.left_shift(tf.constant(1, tf.int64), element[0])
    first = tf.equal(tf.bitwise.bitwise_and(mask, bit), 0)
    return tf.bitwise.bitwise_or(mask, bit), (first, element)


def _decoded(options: ReaderOptions, training: bool, check):
    """A function of a chunk of record elements (``CHUNK`` of them, batched) and the epoch ->
    the dataset of its good ``(image, label)`` examples, every record passed through ``check``
    (``_accounting``): each decoded example with status OK, then for each record that failed
    to parse or decode (or the END of a file) a placeholder with its status. (tf.data's
    try/except: one dataset per chunk, its errors ignored; ``_first_in_slot`` marks the
    slots that came through in a bit mask, and the placeholders of the others follow.)
    """
    size, channels = options.size, options.channels
    augment = preprocess.recipe(options.augment, size)
    if options.pixels not in PIXELS:
        raise ValueError(f"pixels must be one of {PIXELS} (got {options.pixels!r}).")
    train_fn, eval_fn = ((preprocess.train_pixels, preprocess.eval_pixels)
                         if options.pixels == "uint8" else
                         (preprocess.train_image, preprocess.eval_image))

    def decode(slot, path, index, record, epoch):
        image_bytes, label, bbox = _parse(record)
        if training:
            image = train_fn(image_bytes, bbox, _example_seed(options.seed, epoch, path, index),
                             size=size, channels=channels, augment=augment)
        else:
            image = eval_fn(image_bytes, size=size, channels=channels)
        return slot, tf.reshape(image, [-1, size, channels]), label, tf.constant(OK)

    def chunk(path, index, record, read, file_size, epoch):
        slots = tf.range(tf.shape(index, out_type=tf.int64)[0])
        good = (tf.data.Dataset.from_tensor_slices((slots, path, index, record))
                .filter(lambda slot, p, i, r: i >= 0)  # (an END element has no record)
                .map(lambda slot, p, i, r: decode(slot, p, i, r, epoch)).ignore_errors())
        status = tf.where(index < 0, tf.where(tf.equal(read, file_size), END, BAD_SHARD),
                          BAD_RECORD)
        placeholders = tf.data.Dataset.from_tensor_slices((slots, status)).map(
            lambda slot, s: (slot, tf.zeros([0, size, channels], options.pixels),
                             tf.constant(-1, tf.int64), s))

        def account(first, element):
            slot, image, label, s = element
            return check(image, label, s, tf.gather(path, slot), tf.gather(index, slot),
                         tf.gather(read, slot), tf.gather(file_size, slot))

        return (good.concatenate(placeholders)
                .scan(tf.constant(0, tf.int64), _first_in_slot)
                .filter(lambda first, element: first)
                .map(account)
                .filter(lambda image, label, s: tf.equal(s, OK))
                .map(lambda image, label, s: (tf.ensure_shape(image, [size, size, channels]),
                                              label)))

    return chunk


def _where(status, path, index, read, file_size):
    """What a bad record's line names: the file and record, or the shard's readable bytes."""
    return tf.where(
        tf.equal(status, BAD_SHARD),
        tf.strings.join([path, ": corrupt or truncated shard, only ", tf.strings.as_string(
            read), " of its ", tf.strings.as_string(file_size), " bytes are readable records"]),
        tf.strings.join([path, " record ", tf.strings.as_string(index),
                         ": undecodable image or unparseable record"]))


def _accounting(options: ReaderOptions, counter: tf.Variable):
    """The check of every record after decoding: count, print or stop on bad records, check
    the label range, shift labels to 0-based."""
    low, high = options.label_offset, options.label_offset + options.num_classes
    limit = options.max_bad_records

    def bad_record(where):
        """Counts one bad record: prints it, or stops (error mode, or past the limit)."""
        if options.bad_records == "error":
            tf.debugging.Assert(False, [
                "bad data:", where, "(--bad-records error; --bad-records skip skips and "
                "counts such records)"])
        seen = counter.assign_add(1)
        tf.print(tf.strings.join(["lars_hvd: skipped bad data: ", where]),
                 output_stream=sys.stderr)
        tf.debugging.Assert(seen <= limit, [
            "more than", limit, "bad records on this worker (--max-bad-records); the last:",
            where, ". Check the shards, or raise --max-bad-records."])
        return tf.constant(True)

    def label_check(label, path, index):
        in_range = tf.logical_and(label >= low, label < high)
        tf.debugging.Assert(in_range, [tf.strings.join([
            "label ", tf.strings.as_string(label), " out of range: image/class/label must be "
            f"within {low}..{high - 1} (--label-offset {low}, --num-classes "
            f"{options.num_classes}) in ", path, " record ", tf.strings.as_string(index),
            "; fix --label-offset or --num-classes, or the shard"])])
        return tf.constant(True)

    def check(image, label, status, path, index, read, file_size):
        # The common case (a good record) costs one comparison and one assertion.
        tf.switch_case(status, [lambda: label_check(label, path, index),
                                lambda: bad_record(_where(status, path, index, read,
                                                          file_size)),
                                lambda: bad_record(_where(status, path, index, read,
                                                          file_size)),
                                lambda: tf.constant(True)])
        return image, tf.cast(label - low, tf.int32), status

    return check


def _clean(options: ReaderOptions, counter, training: bool):
    """The decode stage: a function of (records, epoch) -> ``(image, label)`` examples, decoded
    and checked in chunks, in parallel; in record order when deterministic (a chunk's
    examples are consecutive records). The chunk's decoding is a ``tf.function`` of the
    epoch, traced once for all epochs: traced per epoch, the time to a run's first batch grew
    with its epochs."""
    chunk = tf.function(_decoded(options, training, _accounting(options, counter)))

    def clean(records: tf.data.Dataset, epoch: int = 0) -> tf.data.Dataset:
        epoch = tf.constant(epoch, tf.int64)
        return records.batch(CHUNK).interleave(
            lambda *elements: chunk(*elements, epoch), cycle_length=16, block_length=CHUNK,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=options.deterministic or not training)

    return clean


# -- the datasets ---------------------------------------------------------------------------

def _cache_spec(cache: str, kind: str, *key) -> str:
    """``Dataset.cache``'s argument: "" (memory), or a file prefix of its own for each
    worker's part (workers on one node must not share one cache file)."""
    if cache == "memory":
        return ""
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:12]
    return f"{cache}.{kind}-{digest}"


def train_dataset(files: list[str], options: ReaderOptions, *, examples_per_epoch: int,
                  batch_size: int, initial_epoch: int, epochs: int,
                  counter: tf.Variable) -> tf.data.Dataset:
    """This worker's training batches for epochs ``[initial_epoch, epochs)``.

    Args:
      files: this worker's shards (``train_files_for_rank``).
      examples_per_epoch: how many examples this worker takes per epoch.
      batch_size: the per-worker (micro-)batch.
      counter: the bad-record count of this worker (read it after training).
    """
    clean = _clean(options, counter, True)
    cached = None
    if options.cache:
        cached = _records(files, 16, options.deterministic).cache(
            _cache_spec(options.cache, "train", files))

    def epoch_examples(epoch: int) -> tf.data.Dataset:
        # Python-int seeds: each epoch is its own dataset, so its order and augmentation
        # depend on (seed, epoch) only, also after a resume.
        if cached is not None:
            records = cached
        else:
            records = _records(files, 16, options.deterministic,
                               order_seed=[options.seed, epoch])
        records = records.shuffle(options.shuffle_buffer,
                                  seed=(options.seed * 1_000_003 + epoch) % (2**31 - 1) + 1)
        # repeat(): a worker whose shards hold fewer examples than its share wraps around
        # instead of running dry (which would leave the other workers waiting); after the
        # decoding, so that a pass ends before the next begins, in any decoding order.
        return clean(records, epoch).repeat().take(
            examples_per_epoch)

    if not 0 <= initial_epoch < epochs:
        raise ValueError(f"initial_epoch {initial_epoch} is not in [0, epochs={epochs}).")
    examples = epoch_examples(initial_epoch)
    for epoch in range(initial_epoch + 1, epochs):  # lazily: one epoch's iterator at a time
        examples = examples.concatenate(epoch_examples(epoch))
    return examples.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(files: list[str], options: ReaderOptions, *, rank: int, world_size: int,
                 batch_size: int, counter: tf.Variable,
                 max_examples: int | None = None) -> tf.data.Dataset:
    """This worker's part of the validation set, every example once across workers (at most
    ``max_examples`` of them, for evaluating on a subset)."""
    if len(files) >= world_size:
        records = _records(files[rank::world_size], 4, True)
    else:  # fewer shards than workers: every worker reads all, keeps every n-th record
        records = _records(files, 4, True).shard(world_size, rank)
    examples = _clean(options, counter, False)(records)
    if max_examples is not None:
        examples = examples.take(max_examples)
    if options.cache:
        examples = examples.cache(_cache_spec(options.cache, "eval", files, rank, world_size))
    return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE)
