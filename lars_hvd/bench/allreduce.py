"""Horovod allreduce on this machine: bus bandwidth by message size (Gloo and MPI), the
machine's memcpy bandwidth beside it, the tensor-fusion threshold's effect, and the time to
allreduce one model's gradient (``--model``, ResNet-50 by default; fp32 and fp16-compressed).

``python -m lars_hvd.bench allreduce`` launches its measurements itself, one
``horovodrun -np 2`` job per (controller, fusion threshold), because Horovod reads the fusion
threshold once, at init. Each job's rank 0 writes its numbers as JSON for the driver.

Bus bandwidth is the nccl-tests convention: algorithm bandwidth (bytes / time) times
2 (n - 1) / n, the share of the data each rank's link carries in a ring allreduce; it is
comparable across rank counts and with a link's or memory's bandwidth.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_FUSION_BYTES = 64 * 1024 * 1024  # Horovod's default HOROVOD_FUSION_THRESHOLD


def sizes(max_bytes: int) -> list[int]:
    """4 KB, 16 KB, ... up to max_bytes, by factors of 4."""
    result, size = [], 4096
    while size <= max_bytes:
        result.append(size)
        size *= 4
    return result


def _time_calls(fn, calls: int) -> float:
    """Seconds per call over ``calls`` calls, after 2 warm-up calls. A fixed count, never a
    time budget: every rank must make the same collective calls in the same order."""
    for _ in range(2):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def calls_for(nbytes: int) -> int:
    """About 64 MB moved per size, between 3 and 50 calls."""
    return max(3, min(50, (64 << 20) // nbytes))


def memcpy_gbytes_per_second(nbytes: int) -> float:
    """Bytes copied per second by one large NumPy copy (each byte read once, written once)."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    return nbytes / _time_calls(lambda: np.copyto(dst, src), calls_for(nbytes)) / 1e9


def worker(args) -> None:
    """Runs on every rank under horovodrun; rank 0 writes the JSON."""
    import tensorflow as tf

    from lars_hvd import distributed

    distributed.init()
    n = distributed.size()
    bus = 2 * (n - 1) / n
    out: dict = {"world_size": n, "controller": args.controller,
                 "fusion_threshold_bytes": args.fusion_threshold}
    if args.sweep:
        rows = []
        for nbytes in sizes(args.max_bytes):
            tensor = tf.ones([nbytes // 4], tf.float32)
            result = distributed.allreduce(tensor, average=False)
            assert float(result[0]) == n, "allreduce returned a wrong sum"
            seconds = _time_calls(lambda t=tensor: distributed.allreduce(t, average=False).numpy(),
                                  calls_for(nbytes))
            rows.append({"bytes": nbytes, "seconds": seconds,
                         "bus_gbytes_per_second": bus * nbytes / seconds / 1e9})
        out["sizes"] = rows
        out["memcpy_gbytes_per_second"] = memcpy_gbytes_per_second(args.max_bytes)
    from lars_hvd import models

    shapes = [v.shape for v in models.build(args.model, models.input_shape(args.model),
                                            args.num_classes).trainable_variables]
    rng = np.random.default_rng(distributed.rank())
    grads = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes]
    out["gradient"] = {"model": args.model, "tensors": len(grads),
                       "bytes": int(sum(int(np.prod(s)) for s in shapes) * 4)}
    for label, fp16 in (("fp32", False), ("fp16", True)):
        if fp16 and not args.sweep:
            continue

        @tf.function
        def reduce_all(grads, fp16=fp16):
            # Horovod: every tensor enqueued at once, as DistributedOptimizer does; the
            # background thread fuses them into buffers of up to the fusion threshold.
            reduced = [distributed.allreduce(g, fp16=fp16, name=f"grad{i}")
                       for i, g in enumerate(grads)]
            return tf.add_n([tf.reduce_sum(r) for r in reduced])

        out["gradient"][f"{label}_seconds"] = _time_calls(
            lambda f=reduce_all: f(grads).numpy(), calls=5)
    if distributed.is_rank0():
        Path(args.json).write_text(json.dumps(out))


def launch(args, controller: str, fusion: int) -> dict:
    """One horovodrun -np 2 job at one fusion threshold; the size sweep when fusion is on."""
    from lars_hvd import horovodrun

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "lars_hvd.bench", "allreduce-worker", "--controller",
               controller, "--fusion-threshold", str(fusion), "--max-bytes", str(args.max_bytes),
               "--model", args.model, "--num-classes", str(args.num_classes),
               "--json", str(path)] + (["--sweep"] if fusion != 0 else [])
        proc = horovodrun.run(cmd, np_=2, controller=controller, timeout=args.timeout,
                              extra_env={"HOROVOD_FUSION_THRESHOLD": str(fusion)})
        if proc.returncode != 0 or not path.is_file():
            raise RuntimeError(f"the {controller} allreduce benchmark failed (exit "
                               f"{proc.returncode}):\n{proc.stdout[-3000:]}")
        return json.loads(path.read_text())


def measure(args) -> dict:
    jobs = {}
    for controller in args.controllers:
        for fusion in (DEFAULT_FUSION_BYTES, 0):
            key = f"{controller}, fusion {'off' if fusion == 0 else f'{fusion >> 20} MB'}"
            jobs[key] = launch(args, controller, fusion)
            _print(key, jobs[key])
    return {"jobs": jobs}


def _print(key: str, job: dict) -> None:
    for row in job.get("sizes", []):
        print(f"{key}: {row['bytes']:>11,} B  {1e3 * row['seconds']:9.3f} ms  bus "
              f"{row['bus_gbytes_per_second']:7.2f} GB/s", flush=True)
    if "memcpy_gbytes_per_second" in job:
        print(f"{key}: memcpy {job['memcpy_gbytes_per_second']:.2f} GB/s", flush=True)
    r = job["gradient"]
    line = (f"{key}: {r['model']} gradient ({r['tensors']} tensors, {r['bytes'] / 1e6:.1f} "
            f"MB): ")
    line += f"fp32 {1e3 * r['fp32_seconds']:.1f} ms"
    if "fp16_seconds" in r:
        line += f", fp16-compressed {1e3 * r['fp16_seconds']:.1f} ms"
    print(line, flush=True)


def plot(result: dict, path: Path) -> None:
    from lars_hvd.bench import results

    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key, job in result["jobs"].items():
        if "sizes" not in job:
            continue
        xs = [r["bytes"] for r in job["sizes"]]
        ax.plot(xs, [r["bus_gbytes_per_second"] for r in job["sizes"]], marker="o",
                label=f"allreduce bus bandwidth, {key.split(',')[0]}, -np 2")
        ax.axhline(job["memcpy_gbytes_per_second"], ls=":", color=ax.lines[-1].get_color(),
                   label=f"memcpy ({key.split(',')[0]} job)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("GB/s")
    ax.set_title("Horovod allreduce on this machine (2 ranks, loopback)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    results.save_figure(fig, path)
