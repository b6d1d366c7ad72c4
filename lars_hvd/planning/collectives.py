"""How an allreduce runs on a cluster of GPU nodes, and what it costs: NCCL's ring and tree,
Horovod's hierarchical allreduce. No TensorFlow.

The structure is NCCL's own tuning model (``src/graph/tuning.cc``, NCCL 2.4 to 2.9), which
NCCL uses to choose an algorithm for each collective; the hop latencies and bandwidths are a
``cost.Hardware`` profile's:

- **ring** over all ``p`` GPUs: ``2 (p - 1)`` steps, of which ``2 (nodes - 1)`` cross the
  network and the rest NVLink; each GPU sends ``2 (p - 1) / p`` of the bytes, at the slower
  of NVLink and a node's network (one node: NVLink alone).
- **tree** (NCCL >= 2.4, between nodes): a chain inside each node and a double binary tree
  across the nodes, ``2 ((local - 1) NVLink + log2(nodes) network)`` hops; the bytes go up
  and down the tree (twice) at 90% of the bus bandwidth (``busBw * .9`` in NCCL's model).
- **CollNet** (NCCL >= 2.7 on a fabric with SHARP in-network reduction, asked for with
  ``NCCL_COLLNET_ENABLE=1``): a chain inside each node, the switches reduce across the
  nodes: ``2 (local - 1)`` NVLink hops and one network latency however many the nodes
  (``baseLat + 2 (ppn - 1) intraLat + interLat`` in NCCL 2.9's model); the bytes twice at
  90% of the intra-node bus bandwidth (``busBw * .9``, ratio .5). A node's network carries
  its bytes once each way, half a ring's or tree's, so it binds below half that bandwidth.
- NCCL takes whichever is faster for the size; one node uses the ring.
- **hierarchical** (Horovod's ``HOROVOD_HIERARCHICAL_ALLREDUCE``, ``--hierarchical-allreduce``):
  a ring inside each node, then a ring across the nodes at a node's network bandwidth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lars_hvd.planning.cost import Hardware

TREE_BANDWIDTH = 0.9  # a tree's share of the ring's bus bandwidth (NCCL's tuning model)


@dataclass(frozen=True)
class Allreduce:
    """One step's gradients allreduced over a cluster."""
    algorithm: str  # ring, tree or hierarchical
    seconds: float  # every buffer, as if alone
    latency: float  # of one collective (the part a buffer pays before its bytes)
    why: str  # why this algorithm, in words


def ring_seconds(ranks: int, nbytes: float, gbytes_per_second: float, latency: float,
                 buffers: int = 1) -> float:
    """Ring allreduce of ``nbytes`` in ``buffers`` collectives over ``ranks``, each hop
    ``latency`` seconds."""
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    return (buffers * 2 * (ranks - 1) * latency
            + 2 * (ranks - 1) / ranks * nbytes / (gbytes_per_second * 1e9))


def shape(hw: Hardware, gpus: int) -> tuple[int, int]:
    """(GPUs a node, nodes) of ``gpus`` on ``hw``'s nodes, filled in order."""
    return min(gpus, hw.gpus_per_node), math.ceil(gpus / hw.gpus_per_node)


def ring(hw: Hardware, gpus: int, nbytes: float, buffers: int) -> Allreduce:
    _, nodes = shape(hw, gpus)
    across = 2 * (nodes - 1)  # the ring's hops that cross the network
    latency = ((2 * (gpus - 1) - across) * hw.intra_latency_seconds
               + across * hw.inter_latency_seconds)
    bandwidth = (hw.nvlink_gbytes_per_second if nodes == 1 else
                 min(hw.nvlink_gbytes_per_second, hw.network_gbytes_per_second))
    seconds = (buffers * latency + 2 * (gpus - 1) / gpus * nbytes / (bandwidth * 1e9)
               if gpus > 1 and nbytes > 0 else 0.0)
    network = f", {across:,} across the network" if across else ""
    return Allreduce("ring", seconds, latency, f"{2 * (gpus - 1):,} hops{network}")


def tree(hw: Hardware, gpus: int, nbytes: float, buffers: int) -> Allreduce:
    local, nodes = shape(hw, gpus)
    network_hops = math.ceil(math.log2(nodes)) if nodes > 1 else 0
    latency = 2 * ((local - 1) * hw.intra_latency_seconds
                   + network_hops * hw.inter_latency_seconds)
    bandwidth = TREE_BANDWIDTH * min(hw.nvlink_gbytes_per_second, hw.network_gbytes_per_second)
    seconds = buffers * latency + 2 * nbytes / (bandwidth * 1e9) if nbytes > 0 else 0.0
    return Allreduce("tree", seconds, latency, f"{2 * network_hops} network hops, 2 x log2 of "
                     f"{nodes} nodes")


def collnet(hw: Hardware, gpus: int, nbytes: float, buffers: int) -> Allreduce:
    local, nodes = shape(hw, gpus)
    latency = 2 * (local - 1) * hw.intra_latency_seconds + hw.inter_latency_seconds
    bandwidth = TREE_BANDWIDTH * min(hw.nvlink_gbytes_per_second,
                                     2 * hw.network_gbytes_per_second)
    seconds = buffers * latency + 2 * nbytes / (bandwidth * 1e9) if nbytes > 0 else 0.0
    return Allreduce("collnet", seconds, latency, f"SHARP reduces across the {nodes} nodes in "
                     f"the switches: 1 network hop")


def hierarchical(hw: Hardware, gpus: int, nbytes: float, buffers: int) -> Allreduce:
    local, nodes = shape(hw, gpus)
    inside = ring_seconds(local, nbytes, hw.nvlink_gbytes_per_second, hw.intra_latency_seconds,
                          buffers)
    across = ring_seconds(nodes, nbytes, hw.network_gbytes_per_second,
                          hw.inter_latency_seconds, buffers)
    latency = (2 * (local - 1) * hw.intra_latency_seconds
               + 2 * (nodes - 1) * hw.inter_latency_seconds)
    return Allreduce("hierarchical", inside + across, latency, "Horovod's hierarchical, as "
                     f"asked: a ring inside each node of {local}, then one across {nodes} nodes")


def allreduce(hw: Hardware, gpus: int, nbytes: float, buffers: int, *,
              hierarchical_asked: bool = False, nccl_tree: bool = True,
              sharp: bool = False) -> Allreduce:
    """``nbytes`` over ``gpus`` GPUs of ``hw`` in ``buffers`` equal collectives, as Horovod
    with NCCL runs it: Horovod's hierarchical allreduce where asked (on more than one node),
    else the fastest of NCCL's ring, tree (``nccl_tree=False``: the ring alone, as NCCL
    before 2.4 and the 2017 runs had it) and, with ``sharp``, CollNet."""
    _, nodes = shape(hw, gpus)
    if nodes == 1:
        inside = ring(hw, gpus, nbytes, buffers)
        return Allreduce("ring", inside.seconds, inside.latency,
                         f"NCCL's ring inside one node ({inside.why})")
    if hierarchical_asked:
        return hierarchical(hw, gpus, nbytes, buffers)
    if not nccl_tree:
        alone = ring(hw, gpus, nbytes, buffers)
        return Allreduce("ring", alone.seconds, alone.latency,
                         f"a ring ({alone.why}; no tree asked for)")
    options = [ring(hw, gpus, nbytes, buffers), tree(hw, gpus, nbytes, buffers)]
    if sharp:
        options.append(collnet(hw, gpus, nbytes, buffers))
    best, *others = sorted(options, key=lambda a: a.seconds)
    than = " and ".join(f"its {o.algorithm} ({1e3 * o.seconds:.2f} ms: {o.why})"
                        for o in others)
    return Allreduce(best.algorithm, best.seconds, best.latency,
                     f"NCCL's {best.algorithm} ({best.why}), faster here than {than}")
