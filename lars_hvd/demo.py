"""A short LARS + Horovod training of a small CNN on Fashion-MNIST (what `make demo` runs).

    horovodrun -np 2 python -m lars_hvd.demo     # about 3 minutes on 2 CPU cores

The global batch (4096) is fixed; each of the N ranks takes 4096 / N of it. The LR policy
is the paper's: linear warmup (1 epoch) into polynomial decay of power 2; LARS with
eta = 0.001, coupled weight decay 5e-4, momentum 0.9 (You, Gitman, Ginsburg 2017).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.data import fashion_mnist
from lars_hvd.models.small import small_cnn
from lars_hvd.optimizer import LARS
from lars_hvd.schedules import LinearWarmup


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--global-batch-size", type=int, default=4096,
                        help="examples per optimizer step, summed over all ranks")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=10.0,
                        help="peak LARS global LR (absolute, not per 256 examples)")
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--weight-decay-rate", type=float, default=5e-4)
    parser.add_argument("--data-dir", default=None,
                        help=f"Fashion-MNIST IDX folder (default: {fashion_mnist.DEFAULT_DIR})")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="use only the first N training examples (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> float:
    args = parse_args(argv)
    # Horovod: initialize first, before TF creates its thread pools.
    distributed.init()
    rank, size = distributed.rank(), distributed.size()
    if args.global_batch_size <= 0 or args.global_batch_size % size:
        raise SystemExit(
            f"--global-batch-size={args.global_batch_size} must be a positive multiple of the "
            f"{size} ranks; try {max(size, args.global_batch_size // size * size)}."
        )
    per_worker_batch = args.global_batch_size // size
    tf.keras.utils.set_random_seed(args.seed)

    x_train, y_train = fashion_mnist.load("train", args.data_dir)
    x_test, y_test = fashion_mnist.load("test", args.data_dir)
    if args.train_examples:
        x_train, y_train = x_train[: args.train_examples], y_train[: args.train_examples]
    # Horovod: each rank trains and evaluates on its own disjoint shard.
    x_train, y_train = fashion_mnist.shard(x_train, y_train, rank, size)
    x_test, y_test = fashion_mnist.shard(x_test, y_test, rank, size)
    steps_per_epoch = x_train.shape[0] // per_worker_batch
    if steps_per_epoch == 0:
        raise SystemExit(
            f"Each rank holds {x_train.shape[0]} training examples, fewer than its per-worker "
            f"batch of {per_worker_batch}; lower --global-batch-size."
        )
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = int(round(args.warmup_epochs * steps_per_epoch))
    train_data = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(x_train.shape[0], seed=args.seed + rank)
        .batch(per_worker_batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )

    schedule = LinearWarmup(
        tf.keras.optimizers.schedules.PolynomialDecay(
            args.learning_rate, max(1, total_steps - warmup_steps), end_learning_rate=0.0,
            power=2.0,
        ),
        warmup_steps=warmup_steps,
    )
    lars = LARS(learning_rate=schedule, momentum=0.9, weight_decay_rate=args.weight_decay_rate,
                trust_coefficient=0.001)
    model = small_cnn()
    # Horovod: start every rank from rank 0's initial weights.
    distributed.broadcast_model(model)
    model.compile(
        # Horovod: average gradients over ranks before LARS sees them.
        optimizer=distributed.distributed_optimizer(lars),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    if distributed.is_rank0():
        print(f"world size {size}: global batch {args.global_batch_size} = {size} x "
              f"{per_worker_batch} per worker; {steps_per_epoch} steps/epoch, "
              f"{total_steps} steps, warmup {warmup_steps} steps, peak LR {args.learning_rate}",
              flush=True)
    start = time.perf_counter()
    model.fit(train_data, epochs=args.epochs, callbacks=distributed.callbacks(),
              # Horovod: only rank 0 prints progress.
              verbose=2 if distributed.is_rank0() else 0)
    wall = time.perf_counter() - start
    _, local_accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    # Horovod: every rank evaluated its own test shard; the mean is the full test accuracy.
    accuracy = float(distributed.allreduce_mean(tf.constant(local_accuracy, tf.float32)))
    if distributed.is_rank0():
        images = steps_per_epoch * args.epochs * args.global_batch_size
        print(f"test accuracy {accuracy:.4f} | {images / wall:.0f} images/s | "
              f"wall {wall:.1f} s | global batch {args.global_batch_size} | world size {size}",
              flush=True)
    return accuracy


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
