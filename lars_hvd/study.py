"""The paper's central result at small scale: test accuracy vs global batch, with and without LARS.

    python -m lars_hvd.study            # the full sweep (make study); resumable
    python -m lars_hvd.study --quick    # a ~10-minute subset

Every run is a real ``lars_hvd.train`` run (its ``main()``, in this process), on Fashion-MNIST
with a fixed epoch budget, for each global batch x optimizer x learning rate of the grid, for
a network with batch norm and one without (the paper's AlexNet-BN vs AlexNet contrast).
Fairness: every optimizer gets the same search at every batch size -- three learning rates
a factor of 4 apart, extended by factors of 4 while the best is at an edge -- all recorded;
the table reports the best, and SGD at exactly the linear-scaling rule beside it. Where the
best optimizers of a cell are within ``--close`` points, their best LRs are rerun with more
seeds and the spread is shown. Then the largest batch again with 4x the epochs, for SGD and
LARS: whether the shortfall there is the optimizer's or the step budget's.

Results: one JSON row per run in ``<out>/runs.jsonl`` (finished runs are skipped when the
sweep is run again), and from those rows ``<out>/table.md``, ``<out>/accuracy_vs_batch.png``
and ``<out>/trust_ratios.png`` (the per-layer LARS trust ratios of one large-batch run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

# Learning-rate grids, the same for every optimizer: three values a factor of 4 apart around
# the optimizer's usual setting, extended by further factors of 4 (at most EXTEND times) while
# the best value sits at an edge, so that no optimizer is judged at the edge of its grid. SGD
# follows the linear-scaling rule (Goyal et al.: 0.1 per 256 examples, the middle value);
# LARS and LAMB take absolute LRs (their step is scaled per layer). Values: (scaling, grid).
LR_GRIDS = {
    "sgd": ("linear", (0.025, 0.1, 0.4)),  # per 256 examples
    "lars": ("none", (2.5, 10.0, 40.0)),
    "lamb": ("none", (0.0025, 0.01, 0.04)),
}
LR_STEP = 4.0
EXTEND = 3
LINEAR_RULE = 0.1  # Goyal et al.'s SGD learning rate per 256 examples
FULL = {
    "models": ("small_cnn_bn", "small_cnn"),
    "batches": (128, 1024, 4096, 16384),
    "optimizers": ("sgd", "lars", "lamb"),
    "epochs": 5,
    "train_examples": None,
    "extra_seeds": (1, 2),
}
BUDGET_FACTOR = 4


def budget_settings(settings: dict) -> dict:
    """Why the largest batch falls short: the same search with BUDGET_FACTOR x the epochs
    (and so the steps) at the largest batch, for SGD and LARS, on the first network."""
    return dict(settings, models=settings["models"][:1], batches=(max(settings["batches"]),),
                optimizers=tuple(o for o in settings["optimizers"] if o in ("sgd", "lars")),
                epochs=settings["epochs"] * BUDGET_FACTOR, extra_seeds=())
QUICK = {
    "models": ("small_cnn_bn",),
    "batches": (256, 4096),
    "optimizers": ("sgd", "lars"),
    "epochs": 3,
    "train_examples": 16384,
    "extra_seeds": (),
}


@dataclass(frozen=True)
class Run:
    model: str
    global_batch: int
    optimizer: str
    learning_rate: float  # as given to --learning-rate (per 256 for sgd)
    seed: int
    epochs: int
    train_examples: int | None

    def argv(self) -> list[str]:
        scaling, _ = LR_GRIDS[self.optimizer]
        # TensorBoard scalars (LR, trust ratios) about 10 times an epoch, every step at most.
        steps_per_epoch = (self.train_examples or 60_000) // self.global_batch
        argv = ["--model", self.model, "--global-batch-size", str(self.global_batch),
                "--optimizer", self.optimizer, "--learning-rate", str(self.learning_rate),
                "--lr-scaling", scaling, "--seed", str(self.seed), "--epochs", str(self.epochs),
                "--warmup-epochs", "1",
                "--log-every-steps", str(max(1, steps_per_epoch // 10)),
                # Few steps at large batch leave BN's moving averages stale: measured at
                # 16K, LARS trained to 72% but tested at 33% (docs/results/ablations).
                "--bn-recompute-examples", "10000"]
        if self.train_examples:
            argv += ["--train-examples", str(self.train_examples)]
        if self.model == "small_cnn":
            # Without BN, excluded biases would step at the raw LARS/LAMB LR and stop the
            # network from training (measured); adapt them like every other variable.
            argv.append("--no-exclude-low-rank")
        return argv

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.argv()).encode()).hexdigest()[:16]


def grid(settings: dict, seed: int = 0) -> list[Run]:
    """Every run of the sweep; the smallest and the largest batch of each model come first,
    so that an interrupted sweep already holds the paper's comparison."""
    batches = sorted(settings["batches"])
    order = [batches[0], batches[-1], *batches[1:-1]] if len(batches) > 1 else batches
    return [
        Run(model, batch, optimizer, lr, seed, settings["epochs"], settings["train_examples"])
        for model in settings["models"]
        for batch in order
        for optimizer in settings["optimizers"]
        for lr in LR_GRIDS[optimizer][1]
    ]


# -- results -------------------------------------------------------------------------------

def load_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_row(path: Path, row: dict) -> None:
    """Adds one finished run; the file is rewritten atomically, never left half-written."""
    from lars_hvd.files import atomic_write_text

    rows = load_rows(path) + [row]
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def run_one(run: Run, run_root: Path) -> dict:
    import tensorflow as tf

    from lars_hvd.train import main

    run_dir = run_root / run.key()
    if run_dir.exists():  # an interrupted attempt: its files are the past; start over
        import shutil

        shutil.rmtree(run_dir)
    tf.keras.backend.clear_session()
    start = time.perf_counter()
    try:
        summary = main([*run.argv(), "--run-dir", str(run_dir)])
        accuracy, status = summary.test_accuracy, "ok"
    except FloatingPointError as err:  # the loss diverged: a real outcome of a too-high LR
        accuracy, status = None, f"diverged: {err}"
        summary = None
    return {
        "key": run.key(), **run.__dict__, "argv": run.argv(), "status": status,
        "test_accuracy": accuracy,
        "images_per_second": summary.images_per_second if summary else None,
        "wall_seconds": round(time.perf_counter() - start, 1), "run_dir": str(run_dir),
    }


def accuracy(row: dict) -> float:
    """A run's test accuracy for ranking; a diverged run (no accuracy) ranks last."""
    return -1.0 if row["test_accuracy"] is None else row["test_accuracy"]


def rows_for(rows: list[dict], settings: dict) -> list[dict]:
    """The rows that belong to one sweep (its models, batches, optimizers and epoch budget)."""
    return [r for r in rows if r["model"] in settings["models"]
            and r["global_batch"] in settings["batches"]
            and r["optimizer"] in settings["optimizers"]
            and r["epochs"] == settings["epochs"]
            and r["train_examples"] == settings["train_examples"]]


def best_by_cell(rows: list[dict], seed: int = 0) -> dict:
    """(model, batch, optimizer) -> the seed-0 row with the best test accuracy."""
    best: dict = {}
    for row in rows:
        if row["seed"] != seed:
            continue
        cell = (row["model"], row["global_batch"], row["optimizer"])
        if cell not in best or accuracy(row) > accuracy(best[cell]):
            best[cell] = row
    return best


def edge_extensions(rows: list[dict], settings: dict) -> list[Run]:
    """One more LR, a factor LR_STEP further out, for each cell whose best LR is at the edge
    of what was tried (at most EXTEND beyond the base grid on each side)."""
    rows = rows_for(rows, settings)
    runs = []
    for cell, row in best_by_cell(rows).items():
        if accuracy(row) < 0:
            continue  # every LR diverged: lower ones are in the base grid already
        tried = sorted({r["learning_rate"] for r in rows if r["seed"] == 0 and
                        (r["model"], r["global_batch"], r["optimizer"]) == cell})
        base = LR_GRIDS[cell[2]][1]
        # The best accuracy, wherever it is reached (ties: several LRs at chance level).
        at_best = {r["learning_rate"] for r in rows if r["seed"] == 0 and accuracy(r) ==
                   accuracy(row) and (r["model"], r["global_batch"], r["optimizer"]) == cell}
        if tried[0] in at_best and tried[0] >= min(base) / LR_STEP ** (EXTEND - 1) * 0.999:
            new = tried[0] / LR_STEP
        elif tried[-1] in at_best and tried[-1] <= max(base) * LR_STEP ** (EXTEND - 1) * 1.001:
            new = tried[-1] * LR_STEP
        else:
            continue
        runs.append(Run(*cell, float(f"{new:.6g}"), 0, settings["epochs"],
                        settings["train_examples"]))
    return runs


def seed_reruns(rows: list[dict], settings: dict, close: float) -> list[Run]:
    """Extra seeds for the best LR of each optimizer in cells where they are close."""
    best = best_by_cell(rows_for(rows, settings))
    reruns = []
    for model in settings["models"]:
        for batch in settings["batches"]:
            cell = [best[(model, batch, o)] for o in settings["optimizers"]
                    if (model, batch, o) in best]
            if len(cell) < 2:
                continue
            top = sorted((accuracy(r) for r in cell), reverse=True)
            if top[0] - top[1] >= close / 100:
                continue
            for r in cell:
                for seed in settings["extra_seeds"]:
                    reruns.append(Run(model, batch, r["optimizer"], r["learning_rate"], seed,
                                      settings["epochs"], settings["train_examples"]))
    return reruns


def seed_stats(rows: list[dict], best: dict) -> dict:
    """cell -> (mean, min, max, n) over the seeds of the cell's best learning rate."""
    stats = {}
    for cell, row in best.items():
        accs = [accuracy(r) for r in rows
                if (r["model"], r["global_batch"], r["optimizer"]) == cell
                and r["learning_rate"] == row["learning_rate"]]
        if min(accs) < 0:
            continue  # every learning rate diverged: nothing to average
        stats[cell] = (sum(accs) / len(accs), min(accs), max(accs), len(accs))
    return stats


def _cell_text(stats: dict, best: dict, cell: tuple) -> str:
    if cell not in best:
        return "not run"
    if cell not in stats:
        return "diverged at every LR"
    mean, low, high, n = stats[cell]
    text = f"{100 * mean:.1f}%"
    if n > 1:
        text += f" ({100 * low:.1f}-{100 * high:.1f}, {n} seeds)"
    return f"{text} at {_lr_text(best[cell])}"


def _linear_rule_row(rows: list[dict], model: str, batch: int) -> dict | None:
    """SGD at exactly Goyal et al.'s rule (seed 0): the paper's baseline, untuned."""
    return next((r for r in rows if (r["model"], r["global_batch"], r["optimizer"], r["seed"])
                 == (model, batch, "sgd", 0) and math.isclose(r["learning_rate"], LINEAR_RULE)),
                None)


def _linear_rule_text(rows: list[dict], model: str, batch: int) -> str:
    row = _linear_rule_row(rows, model, batch)
    if row is None:
        return "not run"
    return "diverged" if row["test_accuracy"] is None else f"{100 * row['test_accuracy']:.1f}%"


def markdown_table(rows: list[dict], settings: dict, command: str,
                   budget: dict | None = None) -> str:
    all_rows = rows
    rows = rows_for(rows, settings)
    best = best_by_cell(rows)
    stats = seed_stats(rows, best)
    optimizers = settings["optimizers"]
    with_rule = "sgd" in optimizers
    lines = []
    for model in settings["models"]:
        title = "with batch norm" if model.endswith("_bn") else "without batch norm"
        header = [_label(o) + (", best LR" if o == "sgd" else "") for o in optimizers]
        if with_rule:
            header.insert(1, f"SGD at the linear rule ({LINEAR_RULE:g}/256)")
        lines += [f"### `{model}` ({title}): test top-1 after {settings['epochs']} epochs", "",
                  "| global batch | steps | " + " | ".join(header) + " |",
                  "|---|---|" + "---|" * len(header)]
        for batch in settings["batches"]:
            steps = (settings["train_examples"] or 60_000) // batch * settings["epochs"]
            cells = [_cell_text(stats, best, (model, batch, o)) for o in optimizers]
            if with_rule:
                cells.insert(1, _linear_rule_text(rows, model, batch))
            lines.append(f"| {batch:,} | {steps:,} | " + " | ".join(cells) + " |")
        lines.append("")
    grids = "; ".join(f"{_label(o)}: {', '.join(f'{v:g}' for v in LR_GRIDS[o][1])}"
                      + (" per 256 examples (linear scaling)" if LR_GRIDS[o][0] == "linear"
                         else "") for o in optimizers)
    planned = {run.key() for run in grid(settings)}
    done = len(planned & {r["key"] for r in rows})
    progress = "" if done == len(planned) else (
        f" **Partial: {done} of the {len(planned)} grid runs are done**; run the same "
        f"command again to continue.")
    lines += [f"Learning rates (best shown): {grids}; where the best was at an edge of what "
              f"was tried, the grid went on by factors of {LR_STEP:g} (up to {EXTEND} more), "
              f"for every optimizer alike. Where the best optimizers of a cell were within "
              f"1 point, their best LRs were rerun with 2 more seeds (mean and range shown). "
              f"Every run: linear warmup over 1 epoch, then polynomial decay of power 2 to 0; "
              f"momentum 0.9; weight decay 5e-4; BN statistics recomputed over 10,000 "
              f"training examples before the test. {len(rows)} runs.{progress}", ""]
    if budget is not None:
        lines += budget_table(all_rows, settings, budget)
    lines += [f"Produced by `{command}` on 2 CPU cores; every run is in `runs.jsonl`.", ""]
    return "\n".join(lines)


def budget_table(rows: list[dict], settings: dict, budget: dict) -> list[str]:
    """The largest batch at the sweep's epoch budget and at the longer one, side by side."""
    short, long_ = rows_for(rows, settings), rows_for(rows, budget)
    best_s, best_l = best_by_cell(short), best_by_cell(long_)
    stats_s, stats_l = seed_stats(short, best_s), seed_stats(long_, best_l)
    lines = [f"### Epoch budget at the largest batch: {settings['epochs']} vs "
             f"{budget['epochs']} epochs", "",
             "| model | global batch | optimizer | steps | "
             f"{settings['epochs']} epochs | steps | {budget['epochs']} epochs |",
             "|---|---|---|---|---|---|---|"]
    for model in budget["models"]:
        for batch in budget["batches"]:
            for optimizer in budget["optimizers"]:
                cell = (model, batch, optimizer)
                per_epoch = (settings["train_examples"] or 60_000) // batch
                lines.append(
                    f"| `{model}` | {batch:,} | {_label(optimizer)} | "
                    f"{per_epoch * settings['epochs']:,} | {_cell_text(stats_s, best_s, cell)} "
                    f"| {per_epoch * budget['epochs']:,} | {_cell_text(stats_l, best_l, cell)} |")
    lines += ["", f"Same learning-rate search as above at {budget['epochs']} epochs "
              f"({len(long_)} runs).", ""]
    return lines


def _label(optimizer: str) -> str:
    return {"sgd": "SGD + momentum + warmup", "lars": "LARS",
            "lamb": "LAMB"}[optimizer]


def _lr_text(row: dict) -> str:
    if LR_GRIDS[row["optimizer"]][0] == "linear":
        peak = row["learning_rate"] * row["global_batch"] / 256
        return f"{row['learning_rate']:g}/256 (= {peak:g})"
    return f"LR {row['learning_rate']:g}"


def plot_accuracy(rows: list[dict], settings: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lars_hvd.files import atomic_write

    rows = rows_for(rows, settings)
    best = best_by_cell(rows)
    stats = seed_stats(rows, best)
    models = settings["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), dpi=110,
                             squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for optimizer in settings["optimizers"]:
            points = [(b, stats[(model, b, optimizer)]) for b in settings["batches"]
                      if (model, b, optimizer) in stats]
            if not points:
                continue
            xs = [b for b, _ in points]
            means = [100 * s[0] for _, s in points]
            err = [[100 * (s[0] - s[1]) for _, s in points],
                   [100 * (s[2] - s[0]) for _, s in points]]
            ax.errorbar(xs, means, yerr=err, marker="o", capsize=3, label=_label(optimizer))
        rule = [(b, r["test_accuracy"]) for b in settings["batches"]
                if (r := _linear_rule_row(rows, model, b)) is not None]
        if rule:
            ax.plot([b for b, _ in rule], [100 * (a or 0) for _, a in rule], "k--", marker="x",
                    label=f"SGD at the linear rule ({LINEAR_RULE:g}/256)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(settings["batches"], [f"{b:,}" for b in settings["batches"]])
        ax.set_xlabel("global batch size")
        ax.set_ylabel("test top-1 (%), best LR")
        ax.set_title(f"Fashion-MNIST, {model}, {settings['epochs']} epochs")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


def plot_trust_ratios(rows: list[dict], path: Path) -> bool:
    """The per-layer trust ratios of the best LARS run at the largest batch (BN model first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    from lars_hvd.files import atomic_write

    lars = [r for r in rows if r["optimizer"] == "lars" and r["status"] == "ok"
            and Path(r["run_dir"], "tensorboard", "lars").is_dir()]
    if not lars:
        return False
    largest = max(r["global_batch"] for r in lars)
    pick = max((r for r in lars if r["global_batch"] == largest),
               key=lambda r: (r["model"].endswith("_bn"), accuracy(r)))
    series: dict[str, list] = {}
    for event_file in Path(pick["run_dir"], "tensorboard", "lars").glob("events.out.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                series.setdefault(value.tag, []).append(
                    (event.step, float(tf.make_ndarray(value.tensor))))
    fig, (ax_lr, ax) = plt.subplots(2, 1, figsize=(7, 6), dpi=110, sharex=True)
    for tag, points in sorted(series.items()):
        points.sort()
        if tag == "learning_rate":
            ax_lr.plot(*zip(*points, strict=True), color="black")
        elif tag.startswith("trust_ratio/"):
            ax.plot(*zip(*points, strict=True), marker=".", label=tag.split("/", 1)[1])
    ax_lr.set_ylabel("global LR")
    ax.set_yscale("log")
    ax.set_ylabel("trust ratio eta*||w||/(||g||+beta*||w||)")
    ax.set_xlabel("optimizer step")
    ax.legend(fontsize=8)
    ax_lr.set_title(f"LARS, {pick['model']}, global batch {pick['global_batch']:,}, "
                    f"LR {pick['learning_rate']:g}: per-layer local learning rates")
    for a in (ax_lr, ax):
        a.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return True


def report(rows: list[dict], settings: dict, out: Path, command: str,
           budget: dict | None = None) -> None:
    from lars_hvd.files import atomic_write_text

    atomic_write_text(out / "table.md", markdown_table(rows, settings, command, budget))
    plot_accuracy(rows, settings, out / "accuracy_vs_batch.png")
    plot_trust_ratios(rows_for(rows, settings), out / "trust_ratios.png")


# -- entry point ---------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lars_hvd.study", description=__doc__.split(
        "\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the ~10-minute subset")
    parser.add_argument("--out", default=None,
                        help="results folder (default: docs/results, or docs/results/quick)")
    parser.add_argument("--runs-dir", default="runs/study",
                        help="where each run's own logs and checkpoints go (not committed)")
    parser.add_argument("--epochs", type=int, default=None, help="override the epoch budget")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="override: train on the first N examples only")
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="override the global batch sizes")
    parser.add_argument("--no-budget", action="store_true",
                        help=f"skip the {BUDGET_FACTOR}x-epoch runs at the largest batch "
                             "(never run with --quick)")
    parser.add_argument("--close", type=float, default=1.0,
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
    for name in ("epochs", "train_examples", "batches"):
        value = getattr(args, name)
        if value is not None:
            flags.append("--" + name.replace("_", "-"))
            flags += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return flags


def main(argv=None) -> Path:
    args = parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    for name in ("epochs", "train_examples", "batches"):
        if getattr(args, name) is not None:
            settings[name] = tuple(getattr(args, name)) if name == "batches" else getattr(
                args, name)
    out = Path(args.out or ("docs/results/quick" if args.quick else "docs/results"))
    results = out / "runs.jsonl"
    command = " ".join(["python -m lars_hvd.study", *sweep_flags(args)])
    from lars_hvd import distributed

    distributed.init()  # one process: a Horovod world of size 1, as lars_hvd.train expects
    budget = None if args.quick or args.no_budget else budget_settings(settings)
    new_runs = 0
    phases = [] if args.report_only else [
        (sweep, phase) for sweep in (settings, budget) if sweep is not None
        for phase in ("grid", "edges", "seeds")]
    for sweep, phase in phases:
        while True:  # the edge phase goes on while a best LR is still at an edge
            rows = load_rows(results)
            done = {r["key"] for r in rows}
            todo = {"grid": grid, "edges": edge_extensions,
                    "seeds": lambda r, s: seed_reruns(r, s, args.close)}[phase]
            todo = [r for r in (todo(sweep) if phase == "grid" else todo(rows, sweep))
                    if r.key() not in done]
            label = f"{phase}, {sweep['epochs']} epochs"
            print(f"study ({label}): {len(todo)} runs to do, {len(done)} done; results in "
                  f"{out}", flush=True)
            for i, run in enumerate(todo, 1):
                if args.max_runs is not None and new_runs >= args.max_runs:
                    break
                print(f"[{label} {i}/{len(todo)}] {' '.join(run.argv())}", flush=True)
                row = run_one(run, Path(args.runs_dir))
                append_row(results, row)
                new_runs += 1
                acc = row["test_accuracy"]
                print(f"[{label} {i}/{len(todo)}] -> {row['status']}: test accuracy "
                      f"{acc:.4f} in {row['wall_seconds']:.0f} s" if acc is not None and
                      math.isfinite(acc) else f"-> {row['status']}", flush=True)
            stop = args.max_runs is not None and new_runs >= args.max_runs
            if phase != "edges" or not todo or stop:
                break
        if args.max_runs is not None and new_runs >= args.max_runs:
            break
    report(load_rows(results), settings, out, command, budget)
    print(f"study: table, plots and {len(load_rows(results))} rows in {out}", flush=True)
    return out


if __name__ == "__main__":
    main()
