"""``python -m lars_hvd.study``: runs the sweep (resumable), then writes the table and plots."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from lars_hvd.errors import TrainingDiverged
from lars_hvd.planning.config import spelled
from lars_hvd.study import (
    BUDGET_FACTOR,
    CLOSE,
    DEEP,
    DEEP_NO_BN,
    FULL,
    PARTS,
    QUICK,
    RELATED,
    Trial,
    append_row,
    budget_settings,
    edge_extensions,
    grid,
    load_rows,
    seed_reruns,
)
from lars_hvd.study.report import report
from lars_hvd.study.targets import all_target_trials


def run_trial(trial: Trial, run_root: Path) -> dict:
    import tensorflow as tf

    from lars_hvd.train import main

    run_dir = run_root / trial.key()
    if run_dir.exists():  # an interrupted attempt: its files are the past; start over
        import shutil

        shutil.rmtree(run_dir)
    tf.keras.backend.clear_session()
    start = time.perf_counter()
    try:
        summary = main([*trial.argv(), "--run-dir", str(run_dir)])
        accuracy, status = summary.test_accuracy, "ok"
    except TrainingDiverged as err:  # a real outcome of a too-high learning rate
        accuracy, status = None, f"diverged: {err}"
        summary = None
    plan = json.loads((run_dir / "plan.json").read_text())["plan"]
    row = {
        "key": trial.key(), **trial.__dict__, "argv": trial.argv(), "status": status,
        "test_accuracy": accuracy, "steps": plan["total_steps"],
        "images_per_second": summary.images_per_second if summary else None,
        "wall_seconds": round(time.perf_counter() - start, 1), "run_dir": str(run_dir),
    }
    if trial.target is not None:
        row["target_epoch"] = summary.target_epoch if summary else None
        row["time_to_target_seconds"] = summary.time_to_target_seconds if summary else None
    return row


# -- the command line ---------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lars_hvd.study", description=__doc__.split(
        "\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small subset")
    parser.add_argument("--out", default=None,
                        help="results folder (default: runs/study, or runs/study-quick; the "
                             "published results are docs/results: make study-docs)")
    parser.add_argument("--runs-dir", default="runs/study/runs",
                        help="where each run's own logs and checkpoints go (not committed)")
    parser.add_argument("--epochs", type=int, default=None, help="override the epoch budget")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="override: train on the first N examples only")
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="override the global batch sizes")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="which sweeps to run and report (not with --quick): the base grid "
                             "and its longer budget, the ResNet, the related methods, time to "
                             "target; --epochs, --batches and --train-examples change the base "
                             "only")
    parser.add_argument("--no-budget", action="store_true",
                        help=f"skip the {BUDGET_FACTOR}x-epoch runs at the largest batch "
                             "(never run with --quick)")
    parser.add_argument("--close", type=float, default=CLOSE,
                        help="rerun with more seeds where the best optimizers are within this "
                             "many points")
    parser.add_argument("--max-runs", type=int, default=None,
                        help="stop after this many new runs (the sweep resumes later)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: remake the table and plots from the saved rows")
    return parser.parse_args(argv)


def sweep_flags(args: argparse.Namespace) -> list[str]:
    """The flags that define the sweep (not where it writes), to cite in the table."""
    flags = ["--quick"] if args.quick else []
    if not args.quick and list(args.parts) != list(PARTS):
        flags += ["--parts", *args.parts]
    for name in ("epochs", "train_examples", "batches"):
        value = getattr(args, name)
        if value is not None:
            flags.append(spelled(name))
            flags += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return flags


def run_all(todo: list[Trial], label: str, results: Path, runs_dir: Path,
            limit: int | None) -> int:
    """Runs ``todo`` (at most ``limit`` of them), appending each row; returns how many ran."""
    ran = 0
    for i, trial in enumerate(todo, 1):
        if limit is not None and ran >= limit:
            break
        print(f"[{label} {i}/{len(todo)}] {' '.join(trial.argv())}", flush=True)
        row = run_trial(trial, runs_dir)
        append_row(results, row)
        ran += 1
        acc = row["test_accuracy"]
        print(f"[{label} {i}/{len(todo)}] -> {row['status']}: test accuracy {acc:.4f} in "
              f"{row['wall_seconds']:.0f} s" if acc is not None and math.isfinite(acc) else
              f"-> {row['status']}", flush=True)
    return ran


def sweeps_of(args: argparse.Namespace, settings: dict) -> list[dict]:
    """The sweeps to run, in order: the base grid and its longer budget, then the extension's."""
    if args.quick:
        return [settings]
    sweeps = []
    if "base" in args.parts:
        sweeps += [settings] + ([] if args.no_budget else [budget_settings(settings)])
    if "deep" in args.parts:
        sweeps += [DEEP, DEEP_NO_BN]
    if "related" in args.parts:
        sweeps.append(RELATED)
    return sweeps


def main(argv=None) -> Path:
    args = parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    for name in ("epochs", "train_examples", "batches"):
        if getattr(args, name) is not None:
            settings[name] = tuple(getattr(args, name)) if name == "batches" else getattr(
                args, name)
    out = Path(args.out or ("runs/study-quick" if args.quick else "runs/study"))
    results = out / "runs.jsonl"
    command = " ".join(["python -m lars_hvd.study", *sweep_flags(args)])
    from lars_hvd import distributed

    distributed.init()  # one process: a Horovod world of size 1, as lars_hvd.train expects
    left = args.max_runs
    phases = [] if args.report_only else [
        (sweep, phase) for sweep in sweeps_of(args, settings)
        for phase in ("grid", "edges", "seeds")]
    if not args.report_only and not args.quick and "targets" in args.parts:
        phases.append((None, "targets"))
    for sweep, phase in phases:
        while True:  # the edge phase goes on while a best LR is still at an edge
            rows = load_rows(results)
            done = {r["key"] for r in rows}
            if phase == "targets":  # the CNN's cells (all its sweeps), then the ResNet's
                todo = all_target_trials(rows, settings)
                label = "time to target"
            else:
                todo = {"grid": lambda r, s: grid(s), "edges": edge_extensions,
                        "seeds": lambda r, s: seed_reruns(r, s, args.close)}[phase](rows, sweep)
                label = f"{phase}, {'/'.join(sweep['models'])}, {sweep['epochs']} epochs"
            todo = [r for r in todo if r.key() not in done]
            print(f"study ({label}): {len(todo)} runs to do, {len(done)} done; results in "
                  f"{out}", flush=True)
            ran = run_all(todo, label, results, Path(args.runs_dir), left)
            left = None if left is None else left - ran
            if phase != "edges" or not todo or left == 0:
                break
        if left == 0:
            break
    report(load_rows(results), settings, out, command,
           None if args.quick or args.no_budget else budget_settings(settings),
           parts=() if args.quick else tuple(args.parts))
    print(f"study: table, plots and {len(load_rows(results))} rows in {out}", flush=True)
    return out
