"""What ``python -m lars_hvd.train --dry-run`` prints: the preset, the plan and, with
``--hardware``, what the plan costs there; ``--plot-lr`` draws the schedule. No Horovod, and
no TensorFlow but for ``--plot-lr``."""

from __future__ import annotations

import argparse

from lars_hvd.data import read_manifest
from lars_hvd.planning import cost, profiles
from lars_hvd.planning.config import TrainConfig, flat_values
from lars_hvd.planning.plan import Plan, resolve
from lars_hvd.planning.presets import PRESETS


def projection(config: TrainConfig, plan: Plan, hardware: str,
               network_gbits: float | None, sharp: bool = False) -> str:
    """What ``plan`` costs on ``hardware`` (``cost``'s model on ``profiles``' published
    numbers), with SHARP where ``sharp``; with a batch schedule, each phase and their sum."""
    hw = profiles.hardware(hardware, network_gbits)

    form = data_form(config)

    def project(per_worker_batch: int, accumulation: int):
        return cost.project(hw, config.model.model, plan.world_size, per_worker_batch,
                            accumulation, fp16_allreduce=config.job.fp16_allreduce,
                            hierarchical=config.job.hierarchical_allreduce, data_form=form,
                            bn_group=config.model.bn_group, sharp=sharp)

    if not plan.phases:
        return cost.describe(project(plan.per_worker_batch, plan.accumulation_steps),
                             plan.steps_per_epoch, plan.total_steps)
    lines, seconds = [], 0.0
    for phase in plan.phases:
        projected = project(phase.per_worker_batch, phase.accumulation_steps)
        seconds += phase.steps * projected.step_ms / 1e3
        lines += [f"phase {phase.first_epoch}-{phase.last_epoch} (global batch "
                  f"{phase.global_batch_size})",
                  cost.describe(projected, phase.steps_per_epoch, phase.steps)]
    lines.append(f"whole run                {cost.duration(seconds)} over "
                 f"{len(plan.phases)} phases ({plan.total_steps} steps; training only)")
    return "\n".join(lines)


def data_form(config: TrainConfig) -> str:
    """``pre-sized`` for ImageNet shards whose ``dataset.json`` records a stored shorter side
    (``make_tfrecords --shorter-side``), else ``originals``."""
    if config.data.dataset == "imagenet":
        manifest = read_manifest(config.data.data_dir) or {}
        if (manifest.get("shorter_side") or {}).get("train") is not None:
            return "pre-sized"
    return "originals"


def dry_run(config: TrainConfig, args: argparse.Namespace) -> None:
    """Prints what the command line would run (``--hardware list``: the profiles)."""
    if args.hardware == "list":
        print(profiles.describe())
        return
    plan = resolve(config, args.world_size or 1)
    projected = (projection(config, plan, args.hardware, args.network_gbits, args.sharp)
                 if args.hardware else None)
    print(PRESETS[args.preset].describe(args.preset, flat_values(config)))
    print(plan.describe())
    if projected:
        print(projected)
    if args.plot_lr:
        from lars_hvd.planning.schedule import plot_schedule

        plot_schedule(config, plan, args.plot_lr)
        print(f"learning-rate schedule drawn to {args.plot_lr}")
