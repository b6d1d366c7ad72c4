"""Statistics and output shared by the benchmarks: intervals, ratios, JSON and PNG files."""

from __future__ import annotations

import json
import math
import platform
import statistics
from pathlib import Path

# Two-sided 95% Student t quantiles by degrees of freedom (1..30); beyond, the normal's.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def interval95(values) -> tuple[float, float]:
    """(mean, half-width of its 95% confidence interval); the half-width is 0 for one value."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return mean, t * statistics.stdev(values) / math.sqrt(len(values))


def ratio_summary(numerator, denominator) -> dict:
    """Round-by-round ratios of paired measurements: mean, 95% interval, every ratio."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    mean, half = interval95(ratios)
    return {"ratio": mean, "ci95": half, "rounds": ratios}


def median_interval95(values) -> tuple[float, float, float, float]:
    """(median, low, high, coverage): the distribution-free interval between order
    statistics k and n + 1 - k, with k the largest that keeps the coverage >= 95% (for n < 6
    no such k exists: the interval is min..max, and the coverage says what it is)."""
    xs = sorted(values)
    n = len(xs)
    below = [math.comb(n, i) / 2 ** n for i in range(n + 1)]  # Binomial(n, 1/2)

    def coverage(k: int) -> float:
        return 1 - 2 * sum(below[:k])

    k = 1
    while k + 1 <= n // 2 and coverage(k + 1) >= 0.95:
        k += 1
    return statistics.median(xs), xs[k - 1], xs[n - k], coverage(k)


def median_summary(numerator, denominator) -> dict:
    """Round-by-round ratios: their median with its distribution-free interval."""
    ratios = [a / b for a, b in zip(numerator, denominator, strict=True)]
    median, low, high, cover = median_interval95(ratios)
    return {"median": median, "low": low, "high": high, "coverage": cover, "rounds": ratios}


def machine() -> dict:
    import os

    return {"cpus": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "processor": _cpu_model()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(out: Path, name: str, result: dict, command: str) -> Path:
    """``<out>/<name>.json``, written atomically, with the command and the machine."""
    from lars_hvd.files import atomic_write_text

    path = Path(out) / f"{name}.json"
    atomic_write_text(path, json.dumps({"command": command, "machine": machine(), **result},
                                       indent=2, sort_keys=True) + "\n")
    return path


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from lars_hvd.files import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
