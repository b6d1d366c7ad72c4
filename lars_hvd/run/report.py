"""What a run tells its user: where the ranks run, whether the replicas agree, the bad
records skipped, and the one-line summary."""

from __future__ import annotations

import hashlib
import resource
import socket
from dataclasses import dataclass

import tensorflow as tf

from lars_hvd import distributed
from lars_hvd.run.input_wait import describe


@dataclass
class Summary:
    test_accuracy: float | None
    images_per_second: float
    wall_seconds: float
    global_batch_size: int
    world_size: int
    epochs_run: int
    run_dir: str
    test_examples: int = 0  # evaluated, over all workers
    test_set_examples: int = 0  # in the evaluation set
    peak_memory_mb: float = 0.0  # the largest peak resident memory of any worker
    target_accuracy: float | None = None  # --target-accuracy
    target_epoch: int | None = None  # the epoch whose evaluation reached it (None: never)
    time_to_target_seconds: float | None = None  # MLPerf's count (callbacks.Evaluate)
    batch_schedule: list[int] | None = None  # every phase's global batch (--batch-schedule)
    # of the step time, the share spent waiting for input (the most of any rank; input_wait)
    input_wait_share: float | None = None

    def line(self) -> str:
        accuracy = "n/a" if self.test_accuracy is None else f"{self.test_accuracy:.4f}"
        if self.test_accuracy is not None and self.test_examples < self.test_set_examples:
            accuracy += f" (a subset: {self.test_examples} of {self.test_set_examples} examples)"
        line = (f"test accuracy {accuracy} | {self.images_per_second:.0f} images/s | wall "
                f"{self.wall_seconds:.1f} s | global batch "
                f"{' -> '.join(map(str, self.batch_schedule or [self.global_batch_size]))} | "
                f"world size {self.world_size} | {describe(self.input_wait_share)}")
        if self.target_accuracy is not None:
            line += (f" | target {self.target_accuracy:g} not reached"
                     if self.target_epoch is None else
                     f" | target {self.target_accuracy:g} reached at epoch {self.target_epoch}"
                     f" in {self.time_to_target_seconds:.1f} s")
        return line


def placement(hosts: list[str]) -> str:
    """``"node1 (ranks 0-7), node2 (ranks 8-15)"`` from each rank's host name, in rank order."""
    groups: dict[str, list[int]] = {}
    for rank, host in enumerate(hosts):
        groups.setdefault(host, []).append(rank)

    def spans(ranks):
        runs: list[list[int]] = []
        for rank in ranks:
            if runs and rank == runs[-1][1] + 1:
                runs[-1][1] = rank
            else:
                runs.append([rank, rank])
        return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)

    return ", ".join(f"{host} (rank{'s' if len(r) > 1 else ''} {spans(r)})"
                     for host, r in groups.items())


def print_placement() -> None:
    """Rank 0 prints where every rank runs (the first thing to check on a new cluster)."""
    # Horovod: every rank's host name.
    hosts = distributed.allgather_object(socket.gethostname())
    if distributed.is_rank0():
        print(f"workers                  {placement(hosts)}", flush=True)


def weights_digest(model) -> str:
    """A SHA-256 of the trainable weights' bytes: equal digests, bitwise equal weights."""
    digest = hashlib.sha256()
    for variable in model.trainable_variables:
        digest.update(variable.numpy().tobytes())
    return digest.hexdigest()[:16]


def check_replicas(model) -> bool:
    """Whether every rank ends with bitwise the same trained weights (printed by rank 0).

    Horovod keeps replicas identical by construction (the same broadcast start, the same
    averaged gradients); a difference means a rank trained on something else, and is worth a
    loud line rather than a silent checkpoint of rank 0's copy only."""
    # Horovod: each rank's digest, on every rank.
    digests = distributed.allgather_object(weights_digest(model))
    agree = len(set(digests)) == 1
    if distributed.is_rank0():
        if agree:
            print(f"replicas agree: trained weights bitwise identical on all {len(digests)} "
                  f"workers (sha256 {digests[0]})", flush=True)
        else:
            print(f"WARNING: replicas differ: trained weights per rank {digests}; the "
                  f"checkpoint holds rank 0's", flush=True)
    return agree


def peak_memory_mb() -> float:
    """The largest peak resident memory of any worker, in MB (printed by rank 0)."""
    # Linux reports ru_maxrss in KiB.
    mine = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Horovod: every rank's peak, on every rank.
    peaks = distributed.allgather_object(mine)
    if distributed.is_rank0():
        print(f"peak resident memory     {max(peaks):.0f} MB on the largest worker (per rank: "
              f"{', '.join(f'{p:.0f}' for p in peaks)} MB)", flush=True)
    return max(peaks)


def report_bad_records(counters: list, limit: int) -> int | None:
    """Prints, on rank 0, how many bad records all workers skipped (each was printed);
    ``counters``: this worker's counters (one per input pipeline it built), or Nones."""
    counters = [c for c in counters if c is not None]
    if not counters:
        return None
    mine = tf.add_n([tf.identity(c) for c in counters])
    # Horovod: every rank counted its own records.
    total = int(distributed.allreduce_sum(mine).numpy())
    if distributed.is_rank0():
        print(f"bad records skipped: {total} over all workers and epochs (limit {limit} per "
              f"worker; each is printed above as 'lars_hvd: skipped bad data')", flush=True)
    return total
