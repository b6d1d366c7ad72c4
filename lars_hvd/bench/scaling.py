"""Projected step time and scaling efficiency of data-parallel training at a fixed global
batch, from an alpha-beta model of ring and hierarchical allreduce.

The model (every assumption is a flag of ``python -m lars_hvd.bench scaling``):

- N GPUs, ``gpus_per_node`` a node, n = ceil(N / gpus_per_node) nodes. The global batch B is
  held: each GPU takes b = B / N examples per optimizer step, in k = ceil(b / max_batch)
  micro-batches (gradient accumulation) of b / k.
- Compute: a GPU trains ``gpu_images_per_second`` examples a second (forward + backward),
  independent of the micro-batch size; a fraction ``backward_fraction`` of it is backward.
- One allreduce of S = parameters x bytes per gradient element per optimizer step.
  Ring over p ranks with link bandwidth W and per-hop latency a (Patarasuk & Yuan 2009; the
  bound NCCL and Gloo rings reach):  t = 2 (p - 1) a + 2 (p - 1) / p * S / W.
  Flat ring over all N GPUs: inside one node W is the NVLink bus bandwidth; across nodes
  every ring crosses the node's network links, W = the node's network bandwidth.
  Hierarchical (Horovod's HOROVOD_HIERARCHICAL_ALLREDUCE, NCCL's 2-D schemes): reduce-scatter
  inside the node, ring allreduce across nodes of the node's shards (all of the node's
  GPUs share its network bandwidth), all-gather inside the node.
- Overlap: Horovod reduces gradients while backprop still computes earlier layers' (tensor
  fusion, every cycle). Only the last micro-batch's backward can hide communication, and
  only a fraction ``overlap`` of it (the first layers' gradients arrive last):
  exposed = max(0, t_allreduce - overlap * t_backward_of_last_micro_batch).
- Step time = k * t_micro + exposed; efficiency = (B / step time) / (N * images/s per GPU).

Left out: stragglers, the optimizer's own time (a few ms on a GPU), input pipelines, and
congestion in the network beyond the nodes' own links.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

RESNET50_PARAMETERS = 25_557_032  # models/resnet.py, checked by tests/test_bench.py
ALEXNET_BN_PARAMETERS = 62_379_720  # models/alexnet.py (trainable), checked there too


@dataclass(frozen=True)
class Profile:
    name: str
    gpus_per_node: int
    gpu_images_per_second: float  # ResNet-50 training, mixed precision, per GPU
    intra_node_gbytes_per_second: float  # allreduce bus bandwidth inside a node, GB/s
    inter_node_gbytes_per_second: float  # one node's network bandwidth, GB/s
    intra_node_latency_us: float = 5.0
    inter_node_latency_us: float = 10.0
    max_batch_per_gpu: int = 256
    source: str = ""


PROFILES = {
    "dgx1": Profile(
        "dgx1", 8, 1200.0, 130.0, 12.5,
        source="DGX-1 (8x V100 SXM2, NVLink); 100 Gb/s InfiniBand between nodes (the issue's "
               "default); ~1,200 img/s a V100 for ResNet-50 v1.5 with mixed precision and "
               "~130 GB/s NCCL allreduce bus bandwidth over NVLink are assumed, round values"),
    "dgx-h100": Profile(
        "dgx-h100", 8, 3000.0, 450.0, 400.0,
        source="DGX H100 (8x H100 SXM, NVLink 4); 8x 400 Gb/s InfiniBand a node; ~3,000 "
               "img/s an H100 for ResNet-50 and ~450 GB/s NVLink bus bandwidth are assumed, "
               "round values"),
}


@dataclass(frozen=True)
class Projection:
    gpus: int
    nodes: int
    per_gpu_batch: float
    accumulation_steps: int
    compute_ms: float
    allreduce_ms: float
    exposed_ms: float
    step_ms: float
    images_per_second: float
    efficiency: float


def ring_seconds(ranks: int, nbytes: float, gbytes_per_second: float,
                 latency_us: float) -> float:
    """Ring allreduce time: 2 (p-1) latency + 2 (p-1)/p * bytes / bandwidth."""
    if ranks <= 1:
        return 0.0
    return (2 * (ranks - 1) * latency_us * 1e-6
            + 2 * (ranks - 1) / ranks * nbytes / (gbytes_per_second * 1e9))


def allreduce_seconds(gpus: int, nbytes: float, profile: Profile, hierarchical: bool) -> float:
    local = min(gpus, profile.gpus_per_node)
    nodes = math.ceil(gpus / profile.gpus_per_node)
    if nodes == 1:
        return ring_seconds(local, nbytes, profile.intra_node_gbytes_per_second,
                            profile.intra_node_latency_us)
    if not hierarchical:
        bandwidth = min(profile.intra_node_gbytes_per_second,
                        profile.inter_node_gbytes_per_second)
        return ring_seconds(gpus, nbytes, bandwidth, profile.inter_node_latency_us)
    # Reduce-scatter + all-gather inside the node: together one intra-node ring allreduce.
    inside = ring_seconds(local, nbytes, profile.intra_node_gbytes_per_second,
                          profile.intra_node_latency_us)
    # Across nodes: `local` concurrent rings of nbytes/local each share the node's links.
    across = ring_seconds(nodes, nbytes, profile.inter_node_gbytes_per_second,
                          profile.inter_node_latency_us)
    return inside + across


def project(gpus: int, global_batch: int, profile: Profile, *,
            parameters: int = RESNET50_PARAMETERS, bytes_per_element: int = 4,
            overlap: float = 0.9, backward_fraction: float = 2 / 3,
            hierarchical: bool = True) -> Projection:
    if gpus < 1 or global_batch < gpus:
        raise ValueError(f"need 1 <= gpus <= global batch, got gpus={gpus}, "
                         f"global_batch={global_batch}")
    if not 0 <= overlap <= 1:
        raise ValueError(f"overlap must be in [0, 1], got {overlap}")
    per_gpu = global_batch / gpus
    accumulation = max(1, math.ceil(per_gpu / profile.max_batch_per_gpu))
    micro_seconds = per_gpu / accumulation / profile.gpu_images_per_second
    allreduce = allreduce_seconds(gpus, parameters * bytes_per_element, profile, hierarchical)
    exposed = max(0.0, allreduce - overlap * backward_fraction * micro_seconds)
    step = accumulation * micro_seconds + exposed
    throughput = global_batch / step
    return Projection(
        gpus=gpus, nodes=math.ceil(gpus / profile.gpus_per_node), per_gpu_batch=per_gpu,
        accumulation_steps=accumulation, compute_ms=1e3 * accumulation * micro_seconds,
        allreduce_ms=1e3 * allreduce, exposed_ms=1e3 * exposed, step_ms=1e3 * step,
        images_per_second=throughput,
        efficiency=throughput / (gpus * profile.gpu_images_per_second))


def sweep(profile: Profile, global_batch: int, gpu_counts, **kwargs) -> list[Projection]:
    return [project(n, global_batch, profile, **kwargs) for n in gpu_counts]


def paper_speedup(profile: Profile, gpu_images_per_second: float, overlap: float) -> dict:
    """The model's view of the paper's DGX-1 claim (AlexNet, 8 GPUs: batch 4096 about 3x
    faster than 512 per epoch). Per-epoch time is proportional to step time / batch."""
    profile = replace(profile, gpu_images_per_second=gpu_images_per_second)
    small, large = (project(profile.gpus_per_node, b, profile, overlap=overlap,
                            parameters=ALEXNET_BN_PARAMETERS) for b in (512, 4096))
    return {"gpu_images_per_second": gpu_images_per_second, "overlap": overlap,
            "speedup_4096_over_512": (small.step_ms / 512) / (large.step_ms / 4096),
            "paper": 3.0}


def table(rows: list[Projection], title: str) -> str:
    lines = [f"{title}",
             f"{'GPUs':>6} {'nodes':>5} {'batch/GPU':>9} {'accum':>5} {'compute ms':>10} "
             f"{'allreduce ms':>12} {'exposed ms':>10} {'step ms':>8} {'img/s':>10} "
             f"{'efficiency':>10}"]
    for p in rows:
        lines.append(f"{p.gpus:>6} {p.nodes:>5} {p.per_gpu_batch:>9.0f} "
                     f"{p.accumulation_steps:>5} {p.compute_ms:>10.1f} {p.allreduce_ms:>12.2f} "
                     f"{p.exposed_ms:>10.2f} {p.step_ms:>8.1f} {p.images_per_second:>10.0f} "
                     f"{100 * p.efficiency:>9.1f}%")
    return "\n".join(lines)


def run(args) -> dict:
    """The ``scaling`` subcommand: tables and a plot for every requested profile."""
    from lars_hvd.bench import results

    gpu_counts = [n for n in args.gpus if n <= args.global_batch]
    out: dict = {"global_batch": args.global_batch, "parameters": args.parameters,
                 "overlap": args.overlap, "profiles": {}}
    plt = results.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name in args.profiles:
        profile = PROFILES[name]
        if args.gpu_images_per_second:
            profile = replace(profile, gpu_images_per_second=args.gpu_images_per_second)
        if args.inter_node_gbps:
            profile = replace(profile, inter_node_gbytes_per_second=args.inter_node_gbps / 8)
        kwargs = {"parameters": args.parameters, "overlap": args.overlap,
                  "bytes_per_element": 2 if args.fp16_allreduce else 4}
        ring = sweep(profile, args.global_batch, gpu_counts, hierarchical=False, **kwargs)
        hier = sweep(profile, args.global_batch, gpu_counts, hierarchical=True, **kwargs)
        print(table(hier, f"{name}, hierarchical allreduce: {profile.source}"))
        print(table(ring, f"{name}, flat ring allreduce"))
        out["profiles"][name] = {"profile": asdict(profile),
                                 "hierarchical": [asdict(p) for p in hier],
                                 "ring": [asdict(p) for p in ring]}
        for rows, style in ((hier, "-"), (ring, ":")):
            ax.plot([p.gpus for p in rows], [100 * p.efficiency for p in rows], style,
                    marker="o", label=f"{name}, {'hierarchical' if style == '-' else 'ring'}")
    for overlap in (args.overlap, 0.0):
        check = paper_speedup(PROFILES["dgx1"], args.alexnet_images_per_second, overlap)
        out.setdefault("paper_check", []).append(check)
        print(f"AlexNet-BN on one DGX-1 node ({args.alexnet_images_per_second:g} img/s a GPU "
              f"assumed), overlap {overlap:g}: batch 4096 is "
              f"{check['speedup_4096_over_512']:.2f}x faster per epoch than 512 (the paper: "
              f"about 3x on 8 P100s)")
    ax.axhline(90, color="gray", lw=0.8)
    ax.annotate("Horovod paper: ~90% at 512 GPUs (other models, batch per GPU fixed)",
                (gpu_counts[0], 90.5), fontsize=7, color="gray")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("GPUs")
    ax.set_ylabel("scaling efficiency (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"ResNet-50 at a global batch of {args.global_batch:,}: projected")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out["_figure"] = fig
    return out
