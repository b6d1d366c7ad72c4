"""What batch norm over a group of workers (``--bn-group``) costs, under ``horovodrun -np 2``.

One job (Gloo), two measurements:

- **chain**: the collectives a group adds to one micro-batch of the model, as it makes them:
  2 x its batch-norm layers allreduces of [mean, E[x^2]] (2 x each layer's channels, float32,
  forward then backward), each waiting for the one before it, with a stretch of stand-in
  compute (a sleep) between two. Timed against the same chain without the allreduces, so the
  difference per collective is what the group adds: Horovod's wait for its next cycle and
  the ring. The cost model (``lars_hvd.planning.cost.bn_group_seconds``) says
  ``max(cycle - stretch, ring + cycle / 2)``.
- **training**: ``lars_hvd.train`` on synthetic data with ``--bn-group N`` and with
  ``--bn-group 1``, interleaved rounds (as ``overhead``): the ratio of images/s per worker
  and of CPU seconds per step. It includes the group's non-fused kernel
  (``distributed.GroupBatchNormalization``) beside the collectives.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.bench import results
from lars_hvd.bench.throughput import interleaved, train_path
from lars_hvd.bench.throughput import launch as launch_job


def layer_channels(model: tf.keras.Model) -> list[int]:
    """The channels of each of ``model``'s batch-norm layers, in order."""
    return [int(layer.moving_mean.shape[0]) for layer in model.layers
            if isinstance(layer, tf.keras.layers.BatchNormalization)]


def chain_seconds(channels: list[int], stretch: float, calls: int, *, collective: bool) -> float:
    """Seconds per call of the chain (forward's layers, then backward's in reverse), each
    link an allreduce over the group (``collective``) and a ``stretch`` s sleep."""
    tensors = [tf.ones([2, c]) for c in [*channels, *reversed(channels)]]

    def pause(value):
        time.sleep(stretch)
        return value

    @tf.function
    def chain():
        link = tf.zeros([])
        for t in tensors:
            value = t + link  # waits for the link before it
            if collective:
                value = distributed.group_average(value)
            if stretch:
                value = tf.py_function(pause, [value], tf.float32)
            link = 1e-9 * tf.reduce_sum(value)  # (0 * x: Grappler would cut the link)
        return link

    for _ in range(2):  # trace, then one untimed call
        chain().numpy()
    start = time.perf_counter()
    for _ in range(calls):  # a fixed count: every rank makes the same collectives
        chain().numpy()
    return (time.perf_counter() - start) / calls


def measure_chain(args, channels: list[int]) -> list[dict]:
    """Per stretch: ms a collective adds (the chain with allreduces minus without)."""
    rows = []
    links = 2 * len(channels)
    for stretch_ms in args.stretch_ms:
        alone = chain_seconds(channels, stretch_ms / 1e3, args.calls, collective=False)
        grouped = chain_seconds(channels, stretch_ms / 1e3, args.calls, collective=True)
        rows.append({"stretch_ms": stretch_ms, "measured_stretch_ms": 1e3 * alone / links,
                     "added_ms": 1e3 * (grouped - alone) / links, "collectives": links})
        if distributed.is_rank0():
            print(f"chain, {stretch_ms:g} ms between collectives: {rows[-1]['added_ms']:.3f} ms "
                  f"added by each of {links} allreduces", flush=True)
    return rows


def worker(args) -> dict:
    """Runs on every rank under horovodrun; the result is rank 0's."""
    from lars_hvd.models import build

    # Horovod: the process sets of --bn-group are made at init, for the whole run.
    distributed.init(bn_group=args.workers)
    channels = layer_channels(build(args.model, tuple(args.input_shape), args.num_classes))
    chain = measure_chain(args, channels)
    grouped, plain = f"group {args.workers}", "group 1"
    with tempfile.TemporaryDirectory() as tmp:
        def side(group):
            return lambda timer: train_path(args, Path(tempfile.mkdtemp(dir=tmp)), timer,
                                             f"--bn-group {group}")
        runs = interleaved(args, {grouped: side(args.workers), plain: side(1)})
    images = results.median_summary(runs[grouped]["img_s"], runs[plain]["img_s"])
    cpu = results.median_summary(runs[grouped]["cpu"], runs[plain]["cpu"])
    if distributed.is_rank0():
        print(f"--bn-group {args.workers} / --bn-group 1, {args.model} at "
              f"{args.input_shape[0]} px, batch {args.batch} a worker: images/s median "
              f"{images['median']:.3f} [{images['low']:.3f}, {images['high']:.3f}], CPU s per "
              f"step median {cpu['median']:.3f} [{cpu['low']:.3f}, {cpu['high']:.3f}]",
              flush=True)
    return {"model": args.model, "image_size": args.input_shape[0],
            "batch_per_worker": args.batch, "workers": distributed.size(),
            "batch_norm_channels": channels, "chain": chain,
            "grouped_images_per_second": runs[grouped]["img_s"],
            "plain_images_per_second": runs[plain]["img_s"],
            "grouped_cpu_seconds_per_step": runs[grouped]["cpu"],
            "plain_cpu_seconds_per_step": runs[plain]["cpu"],
            "median": images, "cpu_ratio": cpu}


def launch(args) -> dict:
    """``worker`` under ``horovodrun -np args.workers`` (Gloo); rank 0 hands its result back."""
    return launch_job(args, "bn-group",
                      ["--calls", str(args.calls), "--stretch-ms", *map(str, args.stretch_ms)],
                      ("round ", "chain, ", "--bn-group "))
