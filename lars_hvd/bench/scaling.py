"""Projected step time and scaling efficiency at a fixed global batch: a view of
``lars_hvd.planning.cost`` (the same model ``python -m lars_hvd.train --dry-run --hardware`` prints;
its parameters, their sources, and its check against published runs are in docs/cost.md).

N GPUs hold the global batch B: each takes B / N examples per optimizer step, in as many
micro-batches as ``--max-per-gpu-batch`` requires (gradient accumulation). Efficiency is
images/s over N times one GPU's rate at the same micro-batch, compute alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from lars_hvd.planning import cost, profiles
from lars_hvd.planning.cost_validation import epoch_speedup

RESNET50_PARAMETERS = cost.PARAMETERS["resnet50"]
ALEXNET_BN_PARAMETERS = cost.PARAMETERS["alexnet_bn"]


def project(hw: cost.Hardware, gpus: int, global_batch: int, max_per_gpu: int, **kwargs):
    """``cost.project`` of ResNet-50 at ``global_batch`` on ``gpus``, accumulating above
    ``max_per_gpu``; returns (projection, efficiency)."""
    if gpus < 1 or global_batch < gpus:
        raise ValueError(f"need 1 <= gpus <= global batch, got gpus={gpus}, "
                         f"global_batch={global_batch}")
    per_gpu = global_batch / gpus
    accumulation = max(1, math.ceil(per_gpu / max_per_gpu))
    p = cost.project(hw, "resnet50", gpus, per_gpu / accumulation, accumulation, **kwargs)
    return p, p.compute_ms / p.step_ms


def table(rows, title: str) -> str:
    lines = [title,
             f"{'GPUs':>6} {'nodes':>5} {'batch/GPU':>9} {'accum':>5} {'compute ms':>10} "
             f"{'allreduce ms':>12} {'exposed ms':>10} {'step ms':>8} {'img/s':>10} "
             f"{'efficiency':>10} {'bound':>9}"]
    for p, eff in rows:
        lines.append(f"{p.gpus:>6} {p.nodes:>5} {p.per_gpu_batch * p.accumulation_steps:>9.0f} "
                     f"{p.accumulation_steps:>5} {p.compute_ms:>10.1f} {p.allreduce_ms:>12.2f} "
                     f"{p.exposed_ms:>10.2f} {p.step_ms:>8.1f} {p.images_per_second:>10.0f} "
                     f"{100 * eff:>9.1f}% {p.bound:>9}")
    return "\n".join(lines)


def measure(args) -> dict:
    """The ``scaling`` subcommand: tables and a plot for every requested profile."""
    from lars_hvd.bench import results

    gpu_counts = [n for n in args.gpus if n <= args.global_batch]
    out: dict = {"global_batch": args.global_batch, "model": "resnet50", "profiles": {}}
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name in args.profiles:
        hw = profiles.hardware(name, args.network_gbits)
        kwargs = {"fp16_allreduce": args.fp16_allreduce, "input_pipeline": False}
        nccl = [project(hw, n, args.global_batch, args.max_per_gpu_batch, **kwargs)
                for n in gpu_counts]
        hier = [project(hw, n, args.global_batch, args.max_per_gpu_batch, hierarchical=True,
                        **kwargs) for n in gpu_counts]
        print(table(nccl, f"{name}, NCCL's ring or tree, the faster (Horovod's default): "
                          f"{hw.about}"))
        print(table(hier, f"{name}, hierarchical allreduce"))
        out["profiles"][name] = {
            "hardware": hw.about,
            "nccl": [{**asdict(p), "efficiency": e} for p, e in nccl],
            "hierarchical": [{**asdict(p), "efficiency": e} for p, e in hier]}
        for rows, style in ((nccl, "-"), (hier, ":")):
            ax.plot([p.gpus for p, _ in rows], [100 * e for _, e in rows], style, marker="o",
                    label=f"{name}, {'NCCL' if style == '-' else 'hierarchical'}")
    speedup = epoch_speedup(profiles.HARDWARE["dgx1-p100"], "alexnet_bn", 512, 4096)
    out["paper_check"] = {"speedup_4096_over_512": speedup, "paper": 3.0}
    print(f"AlexNet-BN on one DGX-1 (8 P100): an epoch at batch 4096 is {speedup:.2f}x faster "
          f"than at 512 (the paper: about 3x); docs/cost.md says why")
    ax.axhline(90, color="gray", lw=0.8)
    ax.annotate("Horovod paper: ~90% at 512 GPUs (other models, batch per GPU fixed)",
                (gpu_counts[0], 90.5), fontsize=7, color="gray")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("GPUs")
    ax.set_ylabel("scaling efficiency (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"ResNet-50 at a global batch of {args.global_batch:,}: projected "
                 f"(lars_hvd.planning.cost)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out["_figure"] = fig
    return out
