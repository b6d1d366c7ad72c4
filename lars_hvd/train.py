"""Train with LARS under Horovod, the global batch held fixed however many workers run.

    python -m lars_hvd.train                                  # 1 process, the default job
    horovodrun -np 2 python -m lars_hvd.train                 # the same job on 2 workers
    python -m lars_hvd.train --preset resnet50-imagenet-32k --dry-run --world-size 64

The default job (preset fashion-mnist) trains a small BN CNN on Fashion-MNIST at a global
batch of 4096 with LARS. A bad flag, file or environment is one line and exit code 2.
"""

from __future__ import annotations

import os
import sys

from lars_hvd import config as config_lib
from lars_hvd import errors, signals, slurm
from lars_hvd import plan as plan_lib
from lars_hvd.presets import PRESETS


def plot_schedule(config, plan, path: str) -> None:
    """Draws the learning rate of every optimizer step of ``plan`` into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lars_hvd.files import atomic_write
    from lars_hvd.optimizers import build_schedule

    schedule = build_schedule(config, plan)
    micro = plan.accumulation_steps
    steps = np.arange(plan.total_steps + 1)
    lr = [float(schedule(s * micro + micro - 1)) for s in steps]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.plot(steps, lr)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"{config.optimizer.optimizer.upper()}: global batch {plan.global_batch_size}, "
                 f"{plan.epochs} epochs, warmup {plan.warmup_steps} steps, {config.schedule.decay}")
    epochs = ax.secondary_xaxis("top", functions=(lambda s: s / plan.steps_per_epoch,
                                                  lambda e: e * plan.steps_per_epoch))
    epochs.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


def projection(config, plan, hardware: str, network_gbits: float | None) -> str:
    """What ``plan`` costs on ``hardware`` (lars_hvd.cost: published numbers, no TF)."""
    from lars_hvd import cost

    if network_gbits is not None and not network_gbits > 0:
        raise errors.UsageError(f"--network-gbits must be > 0 (got {network_gbits:g}).")
    p = cost.project(cost.hardware(hardware, network_gbits), config.model.model,
                     plan.world_size, plan.per_worker_batch, plan.accumulation_steps,
                     fp16_allreduce=config.run.fp16_allreduce)
    return cost.describe(p, plan.steps_per_epoch, plan.total_steps)


def main(argv=None, extra_callbacks=()):
    """Runs the training command line ``argv``; returns the Summary (None for --dry-run)."""
    config, args = config_lib.parse_args(argv)
    if args.hardware == "list":
        from lars_hvd import cost

        print(cost.describe_hardware())
        return None
    if (args.hardware or args.network_gbits) and not args.dry_run:
        raise errors.UsageError("--hardware and --network-gbits project a --dry-run; add "
                                "--dry-run (or drop them to train).")
    if args.dry_run or args.plot_lr:
        # Planning only: no data, no Horovod.
        plan = plan_lib.resolve(config, args.world_size or 1)
        projected = (projection(config, plan, args.hardware, args.network_gbits)
                     if args.hardware else None)
        print(PRESETS[args.preset].describe(args.preset, config_lib.flat_values(config)))
        print(plan.describe())
        if projected:
            print(projected)
        if args.plot_lr:
            plot_schedule(config, plan, args.plot_lr)
            print(f"learning-rate schedule drawn to {args.plot_lr}")
        return None
    if args.world_size is not None:
        raise errors.UsageError("--world-size plans a --dry-run; a real run takes its size "
                                "from horovodrun/mpirun.")

    # Before TensorFlow loads (seconds): a SIGTERM or SIGUSR1 from now on stops the run at an
    # optimizer step, checkpointed, instead of killing this rank mid-import.
    signals.catch()
    try:
        return _train(config, extra_callbacks)
    except signals.Preempted:
        raise  # (the signals stay ignored while the process leaves)
    except BaseException:
        signals.release()
        raise


def _train(config, extra_callbacks):
    config, note = slurm.adopt_job(config)
    if note and errors.launcher_rank() == 0:
        print(note, flush=True)
    if config.run.xla and "tensorflow" not in sys.modules:
        # XLA reads its flags once, at TF start-up; without this one it clusters for GPUs only.
        flags = os.environ.get("TF_XLA_FLAGS", "")
        os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_cpu_global_jit".strip()
    from lars_hvd import distributed  # (checks the stack: Keras 2, Horovod + TF)

    # Horovod: initialize before any TF op, so threads and GPUs are set for this rank.
    distributed.init()
    from lars_hvd import training

    summary = training.run(config, extra_callbacks=extra_callbacks)
    signals.release()
    return summary


def cli(argv=None) -> int:
    """``main`` for the command line: a UsageError is one line and exit code 2; a run that a
    signal stopped (and checkpointed) exits with 75, to be resumed; anything else is a bug
    and keeps its traceback."""
    try:
        main(argv)
    except errors.UsageError as err:
        return errors.report(err, "lars_hvd.train")
    except signals.Preempted:
        return signals.EXIT_RESUMABLE  # (rank 0 said so when it saved)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
