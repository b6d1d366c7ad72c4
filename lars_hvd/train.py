"""Train with LARS under Horovod, the global batch held fixed however many workers run.

    python -m lars_hvd.train                                  # 1 process, the default job
    horovodrun -np 2 python -m lars_hvd.train                 # the same job on 2 workers
    python -m lars_hvd.train --preset resnet50-imagenet-32k --dry-run --world-size 64

The default job (preset fashion-mnist) trains a small BN CNN on Fashion-MNIST at a global
batch of 4096 with LARS. A bad flag, file or environment is one line and exit code 2.
"""

from __future__ import annotations

import faulthandler
import sys

from lars_hvd import errors, signals, slurm
from lars_hvd.planning.cli import parse_args


def main(argv=None, extra_callbacks=()):
    """Runs the training command line ``argv``; returns the Summary (None for a dry run)."""
    config, args = parse_args(argv)
    if args.dry_run or args.plot_lr or args.hardware == "list":
        from lars_hvd.planning.dry_run import dry_run  # (no data, no Horovod)

        dry_run(config, args)
        return None
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
    from lars_hvd.run import tf_setup

    tf_setup.before_tensorflow(config)
    from lars_hvd import distributed  # (checks the stack: Keras 2, Horovod + TF)

    # Horovod: initialize before any TF op, so threads and GPUs are set for this rank.
    distributed.init(bn_group=config.model.bn_group,
                     hierarchical_allreduce=config.job.hierarchical_allreduce)
    from lars_hvd.run import training

    summary = training.run(config, extra_callbacks=extra_callbacks)
    signals.release()
    return summary


def cli(argv=None) -> int:
    """``main`` for the command line: a UsageError is one line and exit code 2; a run that a
    signal stopped (and checkpointed) exits with 75, to be resumed; anything else is a bug
    and keeps its traceback, a crash in native code (a segmentation fault in MPI, TensorFlow
    or Horovod) its Python one, all threads, on stderr."""
    if not faulthandler.is_enabled():
        faulthandler.enable()  # (before MPI_Init, so Open MPI keeps it: a rank's Python stack)
    try:
        main(argv)
    except errors.UsageError as err:
        return errors.report(err, "lars_hvd.train")
    except signals.Preempted:
        return signals.EXIT_RESUMABLE  # (rank 0 said so when it saved)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
