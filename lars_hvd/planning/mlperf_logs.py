"""Throughput, epochs and time to train of an MLPerf Training ResNet-50 submission, read from
its result logs, as the cost model's validation takes them (docs/cost.md):

    git clone https://github.com/mlcommons/training_results_v3.0
    python -m lars_hvd.planning.mlperf_logs \\
        training_results_v3.0/NVIDIA/results/dgxh100_n96_ngc23.04_mxnet/resnet

- **steady rate**: each training block but a run's first (which holds start-up and the first
  compilations) as its epochs' images over the time from the evaluation before it to its own
  evaluation (so evaluation is included); the median over every such block of every run.
- **epochs**: the epoch of a run's last evaluation (where it reached the target); the median
  over the runs.
- **time to train**: MLPerf's score, ``run_start`` to ``run_stop``, the mean of the runs
  without the fastest and the slowest (5 runs for ResNet-50).

Two log formats: ``:::MLLOG {json}`` (v0.7 on) and ``:::MLL <seconds> <key>: {json}`` (v0.6).
No TensorFlow.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from lars_hvd.data import DATASETS
from lars_hvd.errors import UsageError

OLD_FORMAT = re.compile(r":::MLL ([\d.]+) (\w+): (\{.*\})")


@dataclass(frozen=True)
class Event:
    seconds: float
    key: str
    value: object
    metadata: dict


@dataclass(frozen=True)
class Submission:
    global_batch: int
    images_per_second: float  # the steady rate
    epochs: float  # median over the runs
    minutes: float  # MLPerf's score
    runs: int


def events(text: str) -> list[Event]:
    """The MLPerf log records of one result file, in order."""
    out = []
    for line in text.splitlines():
        if ":::MLLOG {" in line:
            record = json.loads(line.split(":::MLLOG ", 1)[1])
            seconds, key = record["time_ms"] / 1e3, record["key"]
        elif match := OLD_FORMAT.search(line):
            record, seconds, key = json.loads(match[3]), float(match[1]), match[2]
        else:
            continue
        out.append(Event(seconds, key, record.get("value"), record.get("metadata") or {}))
    return out


def first(run: list[Event], key: str) -> Event:
    found = [e for e in run if e.key == key]
    if not found:
        raise ValueError(f"no {key} record in the log")
    return found[0]


def steady_rates(run: list[Event]) -> list[float]:
    """Images/s of each block after the first, evaluation included (module docstring)."""
    images = next((e.value for e in run if e.key == "train_samples"),
                  DATASETS["imagenet"].train)
    evaluations = {e.metadata["epoch_num"]: e.seconds for e in run if e.key == "eval_start"}
    rates = []
    for block in [e for e in run if e.key == "block_start"]:  # (no evaluation before the 1st)
        start, count = block.metadata["first_epoch_num"], block.metadata["epoch_count"]
        end = start + count - 1
        if start - 1 in evaluations and end in evaluations:
            rates.append(count * images / (evaluations[end] - evaluations[start - 1]))
    return rates


def summarize(runs: list[list[Event]]) -> Submission:
    """One submission from its runs' records (module docstring)."""
    minutes = sorted((first(r, "run_stop").seconds - first(r, "run_start").seconds) / 60
                     for r in runs)
    score = statistics.mean(minutes[1:-1] if len(minutes) > 2 else minutes)
    epochs = [[e for e in r if e.key == "eval_accuracy"][-1].metadata["epoch_num"]
              for r in runs]
    rates = [rate for r in runs for rate in steady_rates(r)]
    if not rates:
        raise ValueError("no training block between two evaluations in these logs")
    return Submission(int(first(runs[0], "global_batch_size").value),
                      statistics.median(rates), statistics.median(epochs), score, len(runs))


def read(folder: Path) -> Submission:
    """The submission whose ``result_*.txt`` logs are in ``folder``."""
    files = sorted(folder.glob("result_*.txt"))
    if not files:
        raise UsageError(f"{folder} holds no result_*.txt; give a submission's folder, e.g. "
                         f"training_results_v3.0/NVIDIA/results/<system>/resnet.")
    return summarize([events(f.read_text(errors="replace")) for f in files])


def main(argv: list[str] | None = None) -> int:
    folders = sys.argv[1:] if argv is None else argv
    if not folders:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    print("| submission | global batch | steady images/s | epochs | minutes (MLPerf) | runs |")
    print("|---|---:|---:|---:|---:|---:|")
    for folder in folders:
        try:
            s = read(Path(folder))
        except UsageError as err:
            print(f"lars_hvd.planning.mlperf_logs: error: {err}", file=sys.stderr)
            return 2
        print(f"| {folder} | {s.global_batch:,} | {s.images_per_second:,.0f} | {s.epochs:g} | "
              f"{s.minutes:.3f} | {s.runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
