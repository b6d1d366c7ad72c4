"""python -m lars_hvd.bench {throughput,overhead,optimizer,allreduce,scaling,input,bn-group,
summary,all} [flags]"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from lars_hvd.planning.config import spelled

QUICK = [  # `make bench`: reduced settings, every benchmark in one sitting on 2 cores
    ["throughput", "--model", "small_cnn_bn", "--batch", "256", "--num-iters", "5"],
    ["overhead", "--model", "small_cnn_bn", "--batch", "512", "--rounds", "4"],
    ["overhead", "--model", "small_cnn_bn", "--batch", "256", "--rounds", "6", "--workers", "2"],
    ["optimizer", "--rounds", "5", "--steps", "4", "--batch", "4", "--image-size", "64"],
    ["allreduce", "--max-bytes", str(64 << 20)],
    ["scaling"],
    ["input", "--rounds", "3"],
]


def add_model(p: argparse.ArgumentParser, model: str, batch: int) -> None:
    """--model, its per-worker --batch, --image-size and --num-classes (``_complete``)."""
    p.add_argument("--model", default=model)
    p.add_argument("--batch", type=int, default=batch, help="per-worker batch")
    p.add_argument("--image-size", type=int, default=None,
                   help="square input size (default: the model's)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="default: 1000, or 10 for the 28x28 models")


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/bench",
                   help="where the JSON and PNG results go (the published ones: "
                        "docs/results/bench, make bench-docs)")
    p.add_argument("--no-save", action="store_true", help="print only; write no files")


def parser() -> argparse.ArgumentParser:
    from lars_hvd.bench import steady
    from lars_hvd.planning import profiles

    top = argparse.ArgumentParser(prog="python -m lars_hvd.bench",
                                  description=__doc__,
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("throughput", formatter_class=fmt,
                       help="images/s on synthetic data (Horovod synthetic-benchmark style)")
    add_model(p, "resnet50", batch=32)
    p.add_argument("--num-warmup-batches", type=int, default=3)
    p.add_argument("--num-batches-per-iter", type=int, default=10)
    p.add_argument("--num-iters", type=int, default=10)
    add_common(p)

    p = sub.add_parser("overhead", formatter_class=fmt,
                       help="lars_hvd.train vs a bare model.fit (SGD), interleaved")
    add_model(p, "small_cnn_bn", batch=512)
    p.add_argument("--steps", type=int, default=40, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--skip", type=int, default=5,
                   help="untimed batches at the start of each run")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--bare-lr", choices=["poly", "constant"], default="poly",
                   help="the bare recipe's LR: the paper's polynomial decay (ours' default "
                        "schedule, as tf.keras.optimizers.schedules.PolynomialDecay) or constant")
    p.add_argument("--train-flags", default="",
                   help="more flags for lars_hvd.train's side, e.g. '--signal-check-seconds 0'")
    p.add_argument("--workers", type=int, default=1,
                   help="ranks: above 1, the rounds run under horovodrun -np N (Gloo)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds before a --workers job is killed")
    p.add_argument("--worker-json", default=None, help=argparse.SUPPRESS)
    add_common(p)

    p = sub.add_parser("bn-group", formatter_class=fmt,
                       help="--bn-group N vs 1 under horovodrun -np N: Horovod's chain of "
                            "batch-norm allreduces, and training, interleaved")
    add_model(p, "resnet50", batch=4)
    p.add_argument("--steps", type=int, default=8, help="steps per epoch")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--skip", type=int, default=2, help="untimed batches at the start of a run")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="ranks, all in one group")
    p.add_argument("--stretch-ms", type=float, nargs="+", default=[0.0, 0.5, 2.0],
                   help="stand-in compute between two of the chain's collectives, ms")
    p.add_argument("--calls", type=int, default=20, help="timed calls of each chain")
    p.add_argument("--train-flags", default="", help="more flags for lars_hvd.train")
    p.add_argument("--timeout", type=float, default=3600,
                   help="seconds before the job is killed")
    p.add_argument("--worker-json", default=None, help=argparse.SUPPRESS)
    add_common(p)

    p = sub.add_parser("optimizer", formatter_class=fmt,
                       help="LARS vs SGD vs LAMB: apply step and full step, ResNet-50")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--optimizers", nargs="+", default=["sgd", "lars", "lamb"])
    p.add_argument("--image-size", type=int, default=224,
                   help="input size of the full-step measurement")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=16,
                   help="batch of the full-step measurement (0: skip it)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=5, help="calls timed per round")
    p.add_argument("--xla", choices=["both", "on", "off"], default="both")
    add_common(p)

    p = sub.add_parser("allreduce", formatter_class=fmt,
                       help="Horovod allreduce bandwidth under horovodrun -np 2")
    p.add_argument("--controllers", nargs="+", default=["gloo", "mpi"],
                   choices=["gloo", "mpi"])
    p.add_argument("--max-bytes", type=int, default=256 << 20)
    p.add_argument("--model", default="resnet50", help="whose gradient is allreduced")
    p.add_argument("--num-classes", type=int, default=None,
                   help="default: 1000, or 10 for the 28x28 models")
    p.add_argument("--timeout", type=float, default=600,
                   help="seconds before a job is killed")
    add_common(p)

    p = sub.add_parser("allreduce-worker", help=argparse.SUPPRESS)
    p.add_argument("--controller", required=True)
    p.add_argument("--fusion-threshold", type=int, required=True)
    p.add_argument("--max-bytes", type=int, required=True)
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--model", required=True)
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--json", required=True)

    p = sub.add_parser("scaling", formatter_class=fmt,
                       help="projected scaling of ResNet-50 at a fixed global batch")
    p.add_argument("--global-batch", type=int, default=32768)
    p.add_argument("--gpus", type=int, nargs="+",
                   default=[8, 16, 32, 64, 128, 256, 512, 1024])
    p.add_argument("--profiles", nargs="+", default=list(profiles.HARDWARE),
                   choices=list(profiles.HARDWARE))
    p.add_argument("--max-per-gpu-batch", type=int, default=256,
                   help="above it, a GPU accumulates gradients over micro-batches")
    p.add_argument("--network-gbits", type=float, default=None,
                   help="override a node's network bandwidth, Gb/s")
    p.add_argument("--fp16-allreduce", action="store_true")
    add_common(p)

    p = sub.add_parser("input", formatter_class=fmt,
                       help="ImageNet reader: decode + augment images/s, per core")
    p.add_argument("--data-dir", default=None,
                   help="time these train-*-of-* shards (default: generate JPEGs)")
    p.add_argument("--images", type=int, default=1024,
                   help="generated images (their shards are read as often as a measurement "
                        "needs, in one pass)")
    p.add_argument("--height", type=int, default=375)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=steady.WARMUP,
                   help="untimed batches of each fresh iterator: the pipeline fills")
    p.add_argument("--batches", type=int, default=steady.WINDOW,
                   help="batches per timed window (consecutive windows of one iterator)")
    p.add_argument("--windows", type=int, default=steady.WINDOWS,
                   help=f"timed windows of each iterator (at least {steady.MIN_WINDOWS}): the "
                        f"first reads what was buffered and is left out")
    p.add_argument("--tolerance", type=float, default=steady.TOLERANCE,
                   help="not steady: more than 1 - this of the first window came from what "
                        "the pipeline had buffered (it may have lasted longer)")
    p.add_argument("--rounds", type=int, default=5)
    add_common(p)

    p = sub.add_parser("summary", formatter_class=fmt,
                       help="rewrite --out's summary.md from the results there (after one "
                            "benchmark was run again)")
    p.add_argument("--out", default="runs/bench")

    p = sub.add_parser("all", formatter_class=fmt, help="every benchmark (make bench)")
    p.add_argument("--quick", action="store_true",
                   help="the reduced settings of make bench")
    add_common(p)
    return top


def _complete(args) -> None:
    from lars_hvd import models

    if hasattr(args, "model") and args.command in ("throughput", "overhead", "optimizer",
                                                     "bn-group", "allreduce"):
        if args.model not in models.REGISTRY:
            raise SystemExit(f"--model {args.model!r} is not a registered model; choose from "
                             f"{', '.join(models.names())}")
        shape = models.input_shape(args.model)
        size = getattr(args, "image_size", None) or shape[0]
        args.input_shape = (size, size, shape[-1])
        if args.num_classes is None:
            args.num_classes = 10 if shape[0] == 28 else 1000
    for name in ("batch", "rounds", "steps", "workers", "num_iters", "num_batches_per_iter",
                 "images", "height", "width", "shards", "batches", "windows", "calls"):
        value = getattr(args, name, None)
        if value is not None and value < (0 if name == "batch" and
                                          args.command == "optimizer" else 1):
            raise SystemExit(f"{spelled(name)} must be positive, got {value}")
    if args.command == "input":
        _complete_input(args)
    if args.command == "bn-group":
        if args.workers < 2:
            raise SystemExit(f"--workers {args.workers}: a batch-norm group needs 2 or more "
                             f"workers; e.g. --workers 2")
        if min(args.stretch_ms) < 0:
            raise SystemExit(f"--stretch-ms {min(args.stretch_ms):g} is negative: it is "
                             f"compute between two collectives, e.g. --stretch-ms 0 0.5 2")
    if args.command == "optimizer":
        args.xla_modes = {"both": [False, True], "on": [True], "off": [False]}[args.xla]


def _complete_input(args) -> None:
    from lars_hvd.bench import steady

    if args.windows < steady.MIN_WINDOWS:
        raise SystemExit(f"--windows {args.windows} is too few: the first is left out and the "
                         f"rate is that of the {steady.MIN_WINDOWS - 1} or more after it; use "
                         f"--windows {steady.MIN_WINDOWS} or more")
    if not 0 < args.tolerance < 1:
        raise SystemExit(f"--tolerance {args.tolerance} is not a fraction between 0 and 1; "
                         f"e.g. --tolerance {steady.TOLERANCE}")


def result_name(args) -> str:
    """The JSON's name: the command, and the workers of a multi-worker overhead run."""
    workers = getattr(args, "workers", 1)
    return args.command + (f"-{workers}w" if workers > 1 else "")


def run_one(args, argv: list[str]) -> dict:
    from lars_hvd import distributed
    from lars_hvd.bench import results

    _complete(args)
    command = "python -m lars_hvd.bench " + shlex.join(argv)
    if args.command == "throughput":
        from lars_hvd.bench.throughput import throughput as fn
    elif args.command == "overhead" and args.workers > 1 and args.worker_json is None:
        from lars_hvd.bench.throughput import launch_overhead as fn
    elif args.command == "overhead":
        from lars_hvd.bench.throughput import overhead as fn
    elif args.command == "bn-group" and args.worker_json is None:
        from lars_hvd.bench.bn_group import launch as fn
    elif args.command == "bn-group":
        from lars_hvd.bench.bn_group import worker as fn
    elif args.command == "optimizer":
        from lars_hvd.bench.optimizer import measure as fn
    elif args.command == "allreduce":
        from lars_hvd.bench.allreduce import measure as fn
    elif args.command == "input":
        from lars_hvd.bench.input import measure as fn
    else:
        from lars_hvd.bench.scaling import measure as fn
    result = fn(args)
    figure = result.pop("_figure", None)
    if getattr(args, "worker_json", None) is not None:  # a rank of launch_overhead's job
        if distributed.is_rank0():  # Horovod: one rank hands the result to the driver
            Path(args.worker_json).write_text(json.dumps(result))
        return result
    launched = getattr(args, "workers", 1) > 1  # the driver of a horovodrun job it launched
    if args.no_save or (args.command in ("throughput", "overhead") and not launched
                        and not distributed.is_rank0()):
        return result
    out = Path(args.out)
    path = results.write_json(out, result_name(args), result, command)
    if figure is not None:
        results.save_figure(figure, out / f"{args.command}.png")
    if args.command == "allreduce":
        from lars_hvd.bench.allreduce import plot

        plot(result, out / "allreduce.png")
    print(f"bench: {path}", flush=True)
    return result


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.command == "allreduce-worker":
        from lars_hvd.bench.allreduce import worker

        worker(args)
        return
    from lars_hvd.bench import summary

    if args.command == "summary":
        summary.write(Path(args.out))
        return
    if args.command != "all":
        run_one(args, argv)
        return

    for quick in QUICK:
        # The full set: each benchmark at its defaults (the 2-worker overhead keeps its -np).
        full = quick[:1] + (quick[quick.index("--workers"):] if "--workers" in quick else [])
        sub_argv = [*(quick if args.quick else full), "--out", args.out]
        if args.no_save:
            sub_argv.append("--no-save")
        print(f"== python -m lars_hvd.bench {shlex.join(sub_argv)}", flush=True)
        run_one(parser().parse_args(sub_argv), sub_argv)
    if not args.no_save:
        summary.write(Path(args.out))


if __name__ == "__main__":
    main()
