"""Training throughput on synthetic data, and the train path's overhead over a bare fit.

``throughput`` has the shape of Horovod's ``tensorflow2_synthetic_benchmark.py`` (warm-up
batches, then iterations of N batches; images/s per worker with a 95% interval, and the
total), so users can set our numbers beside theirs. It trains with Keras ``model.fit`` and
LARS wrapped in ``hvd.DistributedOptimizer``, as ``lars_hvd.train`` does; it runs under
``horovodrun -np N`` and in one process.

``overhead`` trains the same model on the same synthetic batch twice, interleaved: through
``lars_hvd.train.main`` (all of its callbacks, logging, checkpoints) and through a bare
``model.fit`` with ``hvd.DistributedOptimizer(SGD)`` and Horovod's two callbacks (broadcast,
metric average). Both with SGD with momentum and no weight decay, so the ratio is the
framework's overhead alone (target: >= 0.98). The bare side's LR is by default the paper's
polynomial decay as a plain Keras schedule, as ours runs it (``--bare-lr constant``: a
constant LR, so that the ratio includes the schedule's cost). With ``--workers N`` the driver
runs the rounds under ``horovodrun -np N`` (every rank alternates the two paths in step),
where a per-step collective of ours costs what it costs on a cluster; it reports the ratio of
images/s and of CPU seconds per step (summed over the ranks), medians with a 95% interval.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.bench import results


class BatchTimer(tf.keras.callbacks.Callback):
    """Wall time of every training batch end after ``skip`` batches of each ``fit``; the
    gaps between consecutive batch ends include the other callbacks' work (this one runs
    last), and exclude validation and epoch-end work."""

    def __init__(self, skip: int):
        super().__init__()
        self.skip = skip
        self.ends: list[float] = []
        self.cpu: list[float] = []  # this process's CPU seconds over the same gaps
        self.seen = 0

    def on_train_begin(self, logs=None):
        self.seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        now, cpu = time.perf_counter(), time.process_time()
        if self.seen > self.skip and self._last is not None:
            self.ends.append(now - self._last[0])
            self.cpu.append(cpu - self._last[1])
        self._last = now, cpu


def synthetic_data(batch: int, input_shape, num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *input_shape), dtype=np.float32)
    y = rng.integers(0, num_classes, batch).astype(np.int32)
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def throughput(args) -> dict:
    """Horovod's synthetic benchmark, with LARS through Keras fit."""
    from lars_hvd.models import build
    from lars_hvd.optim.lars import LARS

    distributed.init()
    model = build(args.model, tuple(args.input_shape), args.num_classes)
    model.compile(
        optimizer=distributed.distributed_optimizer(LARS(learning_rate=0.1)),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    data = synthetic_data(args.batch, args.input_shape, args.num_classes, distributed.rank())
    timer = BatchTimer(skip=args.num_warmup_batches)
    rank0 = distributed.is_rank0()
    if rank0:
        print(f"Model: {args.model}\nBatch size: {args.batch}\nNumber of workers: "
              f"{distributed.size()}", flush=True)
    model.fit(data, steps_per_epoch=args.num_warmup_batches + 1, epochs=1, verbose=0,
              callbacks=[*distributed.callbacks(), timer])
    per_iter = []
    for i in range(args.num_iters):
        timer.ends, timer.skip = [], 0
        model.fit(data, steps_per_epoch=args.num_batches_per_iter + 1, epochs=1, verbose=0,
                  callbacks=[timer])
        img_sec = args.batch * len(timer.ends) / sum(timer.ends)
        per_iter.append(img_sec)
        if rank0:
            print(f"Iter #{i}: {img_sec:.1f} img/sec per worker", flush=True)
    mean, half = results.interval95(per_iter)
    size = distributed.size()
    if rank0:
        print(f"Img/sec per worker: {mean:.1f} +-{half:.1f}")
        print(f"Total img/sec on {size} worker(s): {size * mean:.1f} +-{size * half:.1f}",
              flush=True)
    return {"model": args.model, "batch_per_worker": args.batch, "workers": size,
            "per_worker": [mean, half], "total": [size * mean, size * half],
            "iterations": per_iter}


def train_path(args, run_dir: Path, timer: BatchTimer, flags: str = "") -> None:
    from lars_hvd.train import main

    main(["--dataset", "synthetic", "--model", args.model, "--optimizer", "sgd",
          "--learning-rate", "0.01", "--lr-scaling", "none", "--weight-decay", "0",
          "--global-batch-size", str(args.batch * distributed.size()),
          "--synthetic-examples", str(args.batch * distributed.size() * args.steps),
          "--epochs", str(args.epochs), "--warmup-epochs", "0",
          "--image-size", str(args.input_shape[0]), "--num-classes", str(args.num_classes),
          "--run-dir", str(run_dir), *shlex.split(args.train_flags), *shlex.split(flags)],
         extra_callbacks=[timer])


def _bare_fit(args, timer: BatchTimer) -> None:
    from lars_hvd.models import build

    tf.keras.backend.clear_session()
    model = build(args.model, tuple(args.input_shape), args.num_classes)
    learning_rate = 0.01
    if args.bare_lr == "poly":  # the paper's policy as plain Keras writes it, as ours runs it
        learning_rate = tf.keras.optimizers.schedules.PolynomialDecay(
            0.01, args.steps * args.epochs, end_learning_rate=0.0, power=2.0)
    model.compile(
        # Horovod: the baseline is the plain Horovod + Keras recipe, nothing of ours.
        optimizer=distributed.distributed_optimizer(
            tf.keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    model.fit(synthetic_data(args.batch, args.input_shape, args.num_classes),
              steps_per_epoch=args.steps, epochs=args.epochs, verbose=0,
              callbacks=[*distributed.callbacks(), timer])


def interleaved(args, sides: dict) -> dict[str, dict[str, list[float]]]:
    """Each of ``sides`` (name: a function training with a BatchTimer) once a round for
    ``args.rounds`` rounds, in the other order every other round: each run's images/s per
    worker and CPU seconds per step summed over the ranks."""
    runs: dict[str, dict[str, list[float]]] = {k: {"img_s": [], "cpu": []} for k in sides}
    for r in range(args.rounds):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            timer = BatchTimer(skip=args.skip)
            sides[name](timer)
            img_sec = args.batch * len(timer.ends) / sum(timer.ends)
            # Horovod: every rank's CPU counts; the sum is the job's CPU per step.
            cpu = float(distributed.allreduce_sum(
                tf.constant(sum(timer.cpu) / len(timer.cpu), tf.float64)))
            runs[name]["img_s"].append(img_sec)
            runs[name]["cpu"].append(cpu)
            if distributed.is_rank0():
                print(f"round {r} {name:>4}: {img_sec:.0f} img/s per worker, "
                      f"{1e3 * cpu:.1f} CPU ms per step", flush=True)
    return runs


def overhead(args) -> dict:
    """images/s of lars_hvd.train vs a bare fit, interleaved: their ratio per round, and the
    ratio of CPU seconds per step summed over the ranks."""
    distributed.init()
    rank0 = distributed.is_rank0()
    with tempfile.TemporaryDirectory() as tmp:
        runs = interleaved(args, {
            "ours": lambda timer: train_path(args, Path(tempfile.mkdtemp(dir=tmp)), timer),
            "bare": lambda timer: _bare_fit(args, timer)})
    ours, bare = runs["ours"]["img_s"], runs["bare"]["img_s"]
    summary = results.ratio_summary(ours, bare)
    median = results.median_summary(ours, bare)
    cpu = results.median_summary(runs["ours"]["cpu"], runs["bare"]["cpu"])
    if rank0:
        print(f"lars_hvd.train / bare model.fit, {distributed.size()} worker(s): images/s "
              f"{summary['ratio']:.3f} +-{summary['ci95']:.3f} (mean); median "
              f"{median['median']:.3f} [{median['low']:.3f}, {median['high']:.3f}] "
              f"(target >= 0.98); CPU s per step median {cpu['median']:.3f} "
              f"[{cpu['low']:.3f}, {cpu['high']:.3f}] (target <= 1.02)", flush=True)
    return {"model": args.model, "batch_per_worker": args.batch, "workers": distributed.size(),
            "bare_learning_rate": args.bare_lr, "ours_images_per_second": ours,
            "bare_images_per_second": bare,
            "ours_cpu_seconds_per_step": runs["ours"]["cpu"],
            "bare_cpu_seconds_per_step": runs["bare"]["cpu"],
            **summary, "median": median, "cpu_ratio": cpu}


def launch(args, command: str, flags: list[str], shown: tuple[str, ...]) -> dict:
    """``python -m lars_hvd.bench <command> <flags>`` under ``horovodrun -np args.workers``
    (Gloo), run as the launch flags say (the shared ones added here); prints its lines
    that contain one of ``shown``; rank 0 hands its result back as JSON."""
    import json
    import sys

    from lars_hvd import horovodrun

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{command}.json"
        cmd = [sys.executable, "-m", "lars_hvd.bench", command, "--model", args.model,
               "--batch", str(args.batch), "--image-size", str(args.input_shape[0]),
               "--num-classes", str(args.num_classes), "--steps", str(args.steps),
               "--epochs", str(args.epochs), "--skip", str(args.skip), "--rounds",
               str(args.rounds), "--workers", str(args.workers), "--worker-json", str(path),
               "--train-flags", args.train_flags, *flags]
        # Horovod: the measurements run on args.workers ranks; rank 0 writes the result.
        proc = horovodrun.run(cmd, np_=args.workers, controller="gloo", timeout=args.timeout)
        print("\n".join(line for line in proc.stdout.splitlines()
                        if any(k in line for k in shown)), flush=True)
        if proc.returncode != 0 or not path.is_file():
            raise RuntimeError(f"the {args.workers}-worker {command} benchmark failed (exit "
                               f"{proc.returncode}):\n{proc.stdout[-3000:]}")
        return json.loads(path.read_text())


def launch_overhead(args) -> dict:
    """``overhead`` under ``horovodrun -np args.workers``; rank 0 hands its result back."""
    return launch(args, "overhead", ["--bare-lr", args.bare_lr], ("round ", "bare model.fit"))
