"""The steady-state rate of an input pipeline: consecutive windows of one iterator.

A fresh ``tf.data`` iterator does not start at its steady rate. While its first elements are
awaited, its parallel stages (interleave, map, prefetch) work ahead, and what they buffered
comes out at once: a short window timed after a few untimed batches reads batches that were
ready before the clock started, and overstates the rate (17x for three batches of the
ImageNet reader). So one iterator is read in consecutive windows of equal length:
the first window takes what was buffered and is left out, and the rate is that of the
stretch after it (its images over its seconds, so that the bursts in which a parallel
pipeline delivers count at their share). How much of the first window came from the buffer
follows from its rate beside the stretch's: if nearly all of it did, the buffer may have
outlasted it, and the result says that the windows are too short to be steady.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

# python -m lars_hvd.bench input's defaults, in batches (WINDOW: the batches of one window).
# The ImageNet reader delivers in bursts (up to a window at 3x its rate), so the stretch is
# long: ten windows after the first (with five, a burst moved the rate by 20%).
WARMUP, WINDOW, WINDOWS, TOLERANCE = 5, 20, 11, 0.1
MIN_WINDOWS = 3  # the first (left out), and a stretch of at least two after it


@dataclass(frozen=True)
class Steady:
    """One iterator's windows, in images (elements) per second: ``windows[0]`` is the one
    that read what the pipeline had buffered."""

    windows: tuple[float, ...]  # every timed window's rate (wall time), in order
    cpu: tuple[float, ...]  # every window's images per CPU-second of this process
    tolerance: float

    @property
    def rate(self) -> float:
        """Images per second of wall time over the windows after the first."""
        return _overall(self.windows[1:])

    @property
    def per_cpu_second(self) -> float:
        return _overall(self.cpu[1:])

    @property
    def buffered(self) -> float:
        """The share of the first window that had been made before it was read: at the
        stretch's rate the first window would have taken 1 / rate a batch; what it took less
        came from the buffer (0 when it was not faster)."""
        return max(0.0, 1 - self.rate / self.windows[0])

    @property
    def steady(self) -> bool:
        """False if the first window came (almost) all from the buffer: the buffer may have
        lasted into the stretch, whose rate it would overstate."""
        return self.buffered < 1 - self.tolerance

    @property
    def spread(self) -> tuple[float, float]:
        """The slowest and fastest window of the stretch, relative to its rate."""
        return min(self.windows[1:]) / self.rate, max(self.windows[1:]) / self.rate

    def describe(self) -> str:
        low, high = self.spread
        verdict = ("steady" if self.steady else
                   "NOT steady (the buffer may outlast the first window: use longer windows, "
                   "--batches)")
        return (f"{verdict}: {self.buffered:.0%} of the first window was buffered; windows "
                f"2-{len(self.windows)} at {low:.0%}-{high:.0%} of their rate")


def _overall(rates) -> float:
    """The rate of consecutive equal windows together: their images over their seconds."""
    return len(rates) / sum(1 / r for r in rates)


def measure(iterator: Iterator, *, batch: int, window: int, warmup: int, windows: int,
            tolerance: float = TOLERANCE, clock: Callable[[], float] = time.perf_counter,
            cpu_clock: Callable[[], float] = time.process_time) -> Steady:
    """Reads ``warmup`` batches untimed, then ``windows`` consecutive windows of ``window``
    batches (``batch`` images each), timed by ``clock`` and ``cpu_clock`` (seconds). Each
    batch's first component is copied to NumPy, as a training step would take it."""
    if windows < MIN_WINDOWS:
        raise ValueError(f"windows must be at least {MIN_WINDOWS} (got {windows}).")
    for _ in range(warmup):
        next(iterator)
    walls, cpus = [], []
    for _ in range(windows):
        start, cpu = clock(), cpu_clock()
        for _ in range(window):
            np.asarray(next(iterator)[0])
        wall, cpu = clock() - start, cpu_clock() - cpu
        walls.append(window * batch / wall)
        cpus.append(window * batch / max(cpu, 1e-9))
    return Steady(tuple(walls), tuple(cpus), tolerance)
