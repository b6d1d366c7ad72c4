"""The steady-state rate of an input pipeline: consecutive windows of one iterator.

A fresh ``tf.data`` iterator does not start at its steady rate. While its first elements are
awaited, its parallel stages (interleave, map, prefetch) work ahead, and what they buffered
comes out at once: a short window timed after a few untimed batches reads batches that were
ready before the clock started, and overstates the rate (by 17x for three batches of the
ImageNet reader, issue 40). So the iterator is read in consecutive windows of equal length
until the last ``AGREE`` agree within a tolerance: the buffered batches are gone by then, and
each window reads only what the pipeline made while it was timed. The rate is those windows'
median, and their spread says how steady it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

AGREE = 3  # consecutive windows whose rates must agree
# python -m lars_hvd.bench input's defaults, in batches (WINDOW: the batches of one window)
WARMUP, WINDOW, MAX_WINDOWS, TOLERANCE = 5, 10, 8, 0.1


@dataclass(frozen=True)
class Steady:
    """One iterator's rates, in images (elements) per second."""

    windows: tuple[float, ...]  # every timed window's rate (wall time), in order
    cpu: tuple[float, ...]  # every window's images per CPU-second of this process
    tolerance: float  # the agreement asked for: (max - min) / median of the last windows

    @property
    def rate(self) -> float:
        """Images per second of wall time: the median of the last ``AGREE`` windows."""
        return float(np.median(self.windows[-AGREE:]))

    @property
    def per_cpu_second(self) -> float:
        return float(np.median(self.cpu[-AGREE:]))

    @property
    def spread(self) -> float:
        """How far apart the last ``AGREE`` windows are, relative to their median."""
        last = self.windows[-AGREE:]
        return (max(last) - min(last)) / self.rate

    @property
    def steady(self) -> bool:
        return len(self.windows) >= AGREE and self.spread <= self.tolerance

    def describe(self) -> str:
        verdict = "steady" if self.steady else "NOT steady (use longer windows: --batches)"
        return (f"{verdict}: the last {AGREE} of {len(self.windows)} windows within "
                f"{self.spread:.0%}")


def measure(iterator: Iterator, *, batch: int, window: int, warmup: int, max_windows: int,
            tolerance: float = 0.1) -> Steady:
    """Reads ``warmup`` batches untimed, then windows of ``window`` batches (``batch``
    images each) until the last ``AGREE`` rates agree within ``tolerance`` or
    ``max_windows`` were read. Each batch's first component is copied to NumPy, as a training
    step would take it."""
    if max_windows < AGREE:
        raise ValueError(f"max_windows must be at least {AGREE} (got {max_windows}).")
    for _ in range(warmup):
        next(iterator)
    walls, cpus = [], []
    while len(walls) < max_windows:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(window):
            np.asarray(next(iterator)[0])
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        walls.append(window * batch / wall)
        cpus.append(window * batch / max(cpu, 1e-9))
        result = Steady(tuple(walls), tuple(cpus), tolerance)
        if result.steady:
            return result
    return Steady(tuple(walls), tuple(cpus), tolerance)
