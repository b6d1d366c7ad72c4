"""The run's learning-rate schedule from its plan, and ``--plot-lr``, which draws it.

Planning's one part that needs TensorFlow (the schedule is the real Keras object the run
trains with); it imports TensorFlow only when called, so the dry run stays without it.
"""

from __future__ import annotations

from lars_hvd.planning.config import TrainConfig
from lars_hvd.planning.plan import Plan


def build_schedule(config: TrainConfig, plan: Plan):
    """The LR schedule, indexed by what Keras's ``optimizer.iterations`` counts. With a
    batch schedule it is written for the first phase and each later phase reads it at its
    own epochs (``Rescaled``), so warmup and decay keep their shape in examples seen."""
    from lars_hvd.optim.schedules import PerOptimizerStep, Rescaled, warmup_then_decay

    s, first = config.schedule, plan.for_epoch(0)
    schedule = warmup_then_decay(
        first.peak_learning_rate, first.steps_per_epoch * plan.epochs, first.warmup_steps,
        warmup_start_learning_rate=s.warmup_start_lr, decay=s.decay, poly_power=s.poly_power,
        end_learning_rate=s.end_learning_rate, step_factor=s.step_factor,
        step_boundaries=tuple(round(e * first.steps_per_epoch) for e in s.step_boundaries),
    )
    if plan.phase:
        phase = plan.phases[plan.phase]
        scale = first.steps_per_epoch / phase.steps_per_epoch
        start = phase.first_epoch - 1
        schedule = Rescaled(schedule, scale,
                            first.steps_per_epoch * start - scale * plan.step_at_epoch(start),
                            phase.peak_learning_rate / first.peak_learning_rate)
    if plan.accumulation_steps > 1:
        # Horovod: with backward_passes_per_step = k, iterations advances on every
        # micro-batch; the schedule must advance once per optimizer step.
        schedule = PerOptimizerStep(schedule, plan.accumulation_steps)
    return schedule


def plot_schedule(config: TrainConfig, plan: Plan, path: str) -> None:
    """Draws the learning rate of every optimizer step of ``plan`` into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lars_hvd.files import atomic_write

    steps = np.arange(plan.total_steps + 1)
    phases = {}  # (each phase's own schedule, read at its own micro-batch count)
    lr = []
    for s in steps:
        phase_plan = plan.for_epoch(plan.epoch_of_step(s))
        if phase_plan.phase not in phases:
            phases[phase_plan.phase] = build_schedule(config, phase_plan)
        schedule = phases[phase_plan.phase]
        # The LR of step s is the schedule's at the step's last micro-batch.
        lr.append(float(schedule(phase_plan.iterations_at(s + 1) - 1)))
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.plot(steps, lr)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    batches = " -> ".join(str(p.global_batch_size) for p in plan.phases) or plan.global_batch_size
    ax.set_title(f"{config.optimizer.optimizer.upper()}: global batch {batches}, "
                 f"{plan.epochs} epochs, warmup {plan.warmup_steps} steps, {config.schedule.decay}")
    if not plan.phases:
        epochs = ax.secondary_xaxis("top", functions=(lambda s: s / plan.steps_per_epoch,
                                                      lambda e: e * plan.steps_per_epoch))
        epochs.set_xlabel("epoch")
    for phase in plan.phases[1:]:
        ax.axvline(plan.step_at_epoch(phase.first_epoch - 1), ls=":", color="grey")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
