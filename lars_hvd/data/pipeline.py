"""Input pipelines (TensorFlow), sharded so that the global batch is the same on any number
of workers.

Data order is keyed on (seed, epoch) only: every epoch is one permutation of the training set
shared by all workers, cut into global batches; global batch ``s`` is cut into
``world_size * accumulation_steps`` per-worker micro-batches, and worker ``r`` takes
micro-batches ``r * accumulation_steps ... (r + 1) * accumulation_steps - 1``. So one worker
with 2 accumulation steps and two workers with none see exactly the same global batches, and
a resumed run sees the same order as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from lars_hvd.data import fashion_mnist
from lars_hvd.errors import UsageError
from lars_hvd.planning.config import TrainConfig
from lars_hvd.planning.plan import Plan


@dataclass
class Datasets:
    train: tf.data.Dataset  # per-worker micro-batches, epochs [initial_epoch, epochs) in order
    eval: tf.data.Dataset | None  # this worker's evaluation batches (None: nothing to evaluate)
    bad_records: tf.Variable | None = None  # records this worker skipped (imagenet)


def epoch_order(num_examples: int, plan: Plan, rank: int, epoch: int, seed: int) -> np.ndarray:
    """Indices of the examples worker ``rank`` reads in ``epoch``, in micro-batch order."""
    permutation = np.random.default_rng([seed, epoch]).permutation(num_examples)
    used = permutation[: plan.steps_per_epoch * plan.global_batch_size]
    per_step = used.reshape(plan.steps_per_epoch, plan.world_size,
                            plan.accumulation_steps * plan.per_worker_batch)
    return per_step[:, rank].reshape(-1)


def _in_memory(x: np.ndarray, y: np.ndarray, plan: Plan, rank: int, initial_epoch: int,
               seed: int) -> tf.data.Dataset:
    order = np.concatenate([epoch_order(len(x), plan, rank, epoch, seed)
                            for epoch in range(initial_epoch, plan.epochs)])
    images, labels = tf.constant(x), tf.constant(y)
    return (
        tf.data.Dataset.from_tensor_slices(order)
        .batch(plan.per_worker_batch, drop_remainder=True)
        .map(lambda i: (tf.gather(images, i), tf.gather(labels, i)),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def synthetic(plan: Plan, seed: int) -> tf.data.Dataset:
    """One random per-worker batch, repeated (the shape of Horovod's synthetic benchmark)."""
    rng = np.random.default_rng(seed)
    x = rng.random((plan.per_worker_batch, *plan.input_shape), dtype=np.float32)
    y = rng.integers(0, plan.num_classes, plan.per_worker_batch).astype(np.int32)
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def make_datasets(config: TrainConfig, plan: Plan, rank: int, initial_epoch: int = 0,
                  skip_micro_batches: int = 0) -> Datasets:
    """This worker's training stream from ``initial_epoch`` on, less its first
    ``skip_micro_batches`` (those a run resumed mid-epoch has taken already; an ImageNet
    reader still reads and decodes them), and its evaluation shard."""
    data = _make_datasets(config, plan, rank, initial_epoch)
    if skip_micro_batches:
        data.train = data.train.skip(skip_micro_batches)
    return data


def _make_datasets(config: TrainConfig, plan: Plan, rank: int, initial_epoch: int
                   ) -> Datasets:
    d = config.data
    if d.dataset == "synthetic":
        return Datasets(synthetic(plan, config.job.seed + rank), None)
    if d.dataset == "fashion-mnist":
        x, y = fashion_mnist.load("train", d.data_dir)
        if d.train_examples is not None:
            x, y = x[: d.train_examples], y[: d.train_examples]
        eval_x, eval_y = fashion_mnist.load("test", d.data_dir)
        eval_x, eval_y = eval_x[: plan.eval_examples], eval_y[: plan.eval_examples]
        eval_x, eval_y = fashion_mnist.shard(eval_x, eval_y, rank, plan.world_size)
        evaluation = tf.data.Dataset.from_tensor_slices((eval_x, eval_y)).batch(
            plan.eval_batch_size)
        return Datasets(_in_memory(x, y, plan, rank, initial_epoch, config.job.seed),
                        evaluation)
    if d.dataset == "imagenet":
        return _imagenet(config, plan, rank, initial_epoch)
    raise AssertionError(f"dataset {d.dataset!r} has no pipeline")


def eval_quota(examples: int, rank: int, world_size: int) -> int:
    """How many of ``examples`` worker ``rank`` evaluates: an equal share, the remainder to
    the lowest ranks."""
    return examples // world_size + (1 if rank < examples % world_size else 0)


def check(config: TrainConfig, plan: Plan) -> None:
    """Fails fast, before any model is built, on data that cannot feed this plan."""
    if config.data.dataset == "imagenet":
        _imagenet_files(config, plan, rank=0)
        check_stored_size(config.data.data_dir, plan.input_shape[0])
    elif config.data.dataset == "fashion-mnist":
        fashion_mnist.check_files(config.data.data_dir)


def check_stored_size(data_dir, size: int) -> None:
    """Refuses shards pre-sized (``make_tfrecords --shorter-side``) below the shorter side
    that a ``size``-pixel model's crops are taken from (``preprocess.resize_side``)."""
    from lars_hvd.data import preprocess, read_manifest

    stored = (read_manifest(data_dir) or {}).get("shorter_side") or {}
    needed = preprocess.resize_side(size)
    for split, side in sorted(stored.items()):
        if side is not None and side < needed:
            raise UsageError(
                f"--data-dir {data_dir} stores {split} images pre-sized to a shorter side of "
                f"{side} px (dataset.json), less than the {needed} px that a {size}-pixel "
                f"model's crops are taken from; rewrite them with `python -m "
                f"lars_hvd.data.make_tfrecords SRC {data_dir} --split {split} --shorter-side "
                f"{needed} --overwrite` (or more), or from the originals.")


def _imagenet_files(config: TrainConfig, plan: Plan, rank: int):
    from lars_hvd.data import imagenet

    if config.data.data_dir is None:
        raise UsageError("--dataset imagenet needs --data-dir: the folder of train-*-of-* and "
                         "validation-*-of-* TFRecord shards.")
    train = imagenet.list_shards(config.data.data_dir, "train")
    train = imagenet.train_files_for_rank(train, rank, plan.world_size)
    # No validation shards: train only, and the summary reports no accuracy.
    validation = imagenet.list_shards(config.data.data_dir, "validation", required=False)
    return train, validation


def _imagenet(config: TrainConfig, plan: Plan, rank: int, initial_epoch: int) -> Datasets:
    from lars_hvd.data import imagenet

    d = config.data
    train_files, validation_files = _imagenet_files(config, plan, rank)
    options = imagenet.ReaderOptions(
        size=plan.input_shape[0], channels=plan.input_shape[-1], num_classes=plan.num_classes,
        label_offset=d.label_offset, augment=d.augment, shuffle_buffer=d.shuffle_buffer,
        cache=d.cache, bad_records=d.bad_records, max_bad_records=d.max_bad_records,
        deterministic=config.job.deterministic, seed=config.job.seed)
    counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_records")
    train = imagenet.train_dataset(
        train_files, options,
        examples_per_epoch=plan.micro_steps_per_epoch * plan.per_worker_batch,
        batch_size=plan.per_worker_batch, initial_epoch=initial_epoch, epochs=plan.epochs,
        counter=counter)
    evaluation = None
    if validation_files:
        evaluation = imagenet.eval_dataset(
            validation_files, options, rank=rank, world_size=plan.world_size,
            batch_size=plan.eval_batch_size, counter=counter,
            # (a subset only when asked for: the workers' parts of the whole set may differ)
            max_examples=None if plan.eval_examples >= plan.eval_set_examples else
            eval_quota(plan.eval_examples, rank, plan.world_size))
    return Datasets(train, evaluation, bad_records=counter)


# What the input pipeline's own assertions say (lars_hvd.data.imagenet): bad data, a label
# out of range, too many bad records. TensorFlow raises them as InvalidArgumentError.
_DATA_ASSERTIONS = re.compile(r"assertion failed: (\[(bad data:|label |more than).*)", re.S)


@contextlib.contextmanager
def data_errors():
    """Turns the input pipeline's assertions about the data into a UsageError: one line,
    naming the file and record, without TensorFlow's graph details."""
    try:
        yield
    except tf.errors.InvalidArgumentError as err:
        found = _DATA_ASSERTIONS.search(err.message or "")
        if not found:
            raise
        ours = re.split(r"\n\s*\[\[", found.group(1))[0]  # TensorFlow's nodes and op follow
        words = " ".join(re.findall(r"\[([^\[\]]*)\]", ours))
        raise UsageError(words, every_rank=False) from None
