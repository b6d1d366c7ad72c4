"""The study's table and plots, made from its rows (``lars_hvd.study``)."""

from __future__ import annotations

import math
from pathlib import Path

from lars_hvd.planning.plan import linear_scaled_learning_rate
from lars_hvd.study import (
    DEEP,
    DEEP_NO_BN,
    EXTEND,
    FASHION_MNIST_TRAIN,
    FULL,
    LINEAR_RULE,
    LR_GRIDS,
    LR_STEP,
    METHODS,
    RELATED,
    accuracy,
    best_by_cell,
    grid,
    ramp_batches,
    rows_for,
    target_for,
)


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


def model_tables(rows: list[dict], settings: dict, title: str = "") -> list[str]:
    """One accuracy table per network of the sweep: batches x methods, SGD at the linear rule
    beside SGD's best."""
    rows = rows_for(rows, settings)
    best = best_by_cell(rows)
    stats = seed_stats(rows, best)
    optimizers = settings["optimizers"]
    with_rule = "sgd" in optimizers
    lines = []
    for model in settings["models"]:
        kind = "with batch norm" if model.endswith("_bn") else "without batch norm"
        header = [_label(o) + (", best LR" if o == "sgd" else "") for o in optimizers]
        if with_rule:
            header.insert(1, f"SGD at the linear rule ({LINEAR_RULE:g}/256)")
        lines += [f"### {title}`{model}` ({kind}): test top-1 after {settings['epochs']} "
                  "epochs", "",
                  "| global batch | steps | " + " | ".join(header) + " |",
                  "|---|---|" + "---|" * len(header)]
        for batch in settings["batches"]:
            examples = settings["train_examples"] or FASHION_MNIST_TRAIN
            steps = examples // batch * settings["epochs"]
            cells = [_cell_text(stats, best, (model, batch, o)) for o in optimizers]
            if with_rule:
                cells.insert(1, _linear_rule_text(rows, model, batch))
            lines.append(f"| {batch:,} | {steps:,} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def search_note(rows: list[dict], settings: dict) -> str:
    """What every method of the sweep was given, and how far the sweep is."""
    rows = rows_for(rows, settings)
    optimizers = settings["optimizers"]
    grids = "; ".join(f"{_label(o)}: {', '.join(f'{v:g}' for v in LR_GRIDS[o][1])}"
                      + (" per 256 examples (linear scaling)" if LR_GRIDS[o][0] == "linear"
                         else "") for o in optimizers)
    planned = {run.key() for run in grid(settings)}
    done = len(planned & {r["key"] for r in rows})
    progress = "" if done == len(planned) else (
        f" **Partial: {done} of the {len(planned)} grid runs are done**; run the same "
        f"command again to continue.")
    seeds = (f"Where the best optimizers of a cell were within 1 point, their best LRs were "
             f"rerun with {len(settings['extra_seeds'])} more seeds (mean and range shown). "
             if settings["extra_seeds"] else "One seed per run (no seed reruns: budget). ")
    return (f"Learning rates (best shown): {grids}; where the best was at an edge of what "
            f"was tried, the grid went on by factors of {LR_STEP:g} (up to {EXTEND} more), "
            f"for every optimizer alike. {seeds}"
            f"Every run: linear warmup over 1 epoch, then polynomial decay of power 2 to 0 "
            f"(a ramp: no decay); momentum 0.9; weight decay 5e-4; BN statistics recomputed "
            f"over 10,000 training examples before the test. {len(rows)} runs.{progress}")


def markdown_table(rows: list[dict], settings: dict, command: str,
                   budget: dict | None = None, extension: bool = False) -> str:
    lines = [*model_tables(rows, settings), search_note(rows, settings), ""]
    if budget is not None:
        lines += budget_table(rows, settings, budget)
    if extension:
        lines += related_table(rows, RELATED)
        lines += ["## A deeper network: ResNet-14 (`models/resnet_small.py`)", ""]
        for deep in (DEEP, DEEP_NO_BN):
            lines += [*model_tables(rows, deep), search_note(rows, deep), ""]
        lines += target_table(rows, [FULL, DEEP])
    lines += [f"Produced by `{command}` on 2 CPU cores; every run is in `runs.jsonl`.", ""]
    return "\n".join(lines)


def related_table(rows: list[dict], settings: dict) -> list[str]:
    """The related methods beside SGD, LARS and LAMB where the large batches fall short."""
    rows = rows_for(rows, settings)
    best = best_by_cell(rows)
    stats = seed_stats(rows, best)
    optimizers = settings["optimizers"]
    examples = settings["train_examples"] or FASHION_MNIST_TRAIN
    lines = [f"## The related methods at the large batches: test top-1 after "
             f"{settings['epochs']} epochs", "",
             "| network | global batch | steps (ramp: its batches) | "
             + " | ".join(_label(o) for o in optimizers) + " |",
             "|---|---|---|" + "---|" * len(optimizers)]
    for model in settings["models"]:
        for batch in settings["batches"]:
            ramp = ramp_batches(batch, settings["epochs"])
            ramp_steps = sum(examples // b for b in ramp)
            steps = (f"{examples // batch * settings['epochs']:,} (ramp: {ramp_steps:,}, "
                     f"{ramp[0]:,} to {batch:,})")
            cells = [_cell_text(stats, best, (model, batch, o)) for o in optimizers]
            lines.append(f"| `{model}` | {batch:,} | {steps} | " + " | ".join(cells) + " |")
    lines += ["", "A ramp starts at 1/8 of the cell's batch and doubles at each epoch until it "
              "reaches it (the column's batch); its LR stays at the peak after the warmup "
              "(Smith et al.: the batch grows instead of the LR decaying), and for SGD it is "
              "the linear rule of the first batch. Equal epochs, so a ramp takes more steps. "
              "RMSprop warm-up: RMSprop (LR 3e-4) turning into momentum SGD by the end of epoch "
              "1 (Akiba et al. 2017). LARS clip: the local rate min(LR, trust), eta 0.02 (apex's "
              "LARC), the LR a cap on SGD's grid.", "", search_note(rows, settings), ""]
    return lines


def target_table(rows: list[dict], sweeps: list[dict]) -> list[str]:
    """Epochs and seconds to the target accuracy, per cell (``--target-accuracy``)."""
    lines = []
    for settings in sweeps:
        for model in settings["models"]:
            target = target_for(rows, settings, model)
            done = [r for r in rows if r.get("target") is not None and r["model"] == model
                    and r["epochs"] == settings["epochs"]]
            if target is None or not done:
                continue
            optimizers = [o for o in METHODS if any(r["optimizer"] == o for r in done)]
            batches = sorted({r["global_batch"] for r in done})
            lines += [f"### Time to {100 * target:g}% test top-1, `{model}`", "",
                      "| global batch | " + " | ".join(_label(o) for o in optimizers) + " |",
                      "|---|" + "---|" * len(optimizers)]
            for batch in batches:
                cells = []
                for o in optimizers:
                    row = next((r for r in done if (r["global_batch"], r["optimizer"],
                                                    r["target"]) == (batch, o, target)), None)
                    cells.append("not run" if row is None else _target_text(row, settings))
                lines.append(f"| {batch:,} | " + " | ".join(cells) + " |")
            lines += ["", f"The target: the best small-batch accuracy (batch "
                      f"{min(settings['batches']):,}) less 1 point, rounded down to a whole "
                      f"percent. Each cell: its best LR (seed 0) again with `--target-accuracy "
                      f"{target:g}`; epochs and seconds from the start of training to the end "
                      f"of the evaluation that reached it (MLPerf's count: every epoch, "
                      f"evaluation and checkpoint between), with the moving BN statistics "
                      f"(the per-epoch evaluations do not recompute them).", ""]
    return lines


def _target_text(row: dict, settings: dict) -> str:
    if row["test_accuracy"] is None:
        return "diverged"
    if row.get("target_epoch") is None:
        return f"not in {settings['epochs']} epochs"
    return f"epoch {row['target_epoch']}, {row['time_to_target_seconds']:.0f} s"


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
                per_epoch = (settings["train_examples"] or FASHION_MNIST_TRAIN) // batch
                lines.append(
                    f"| `{model}` | {batch:,} | {_label(optimizer)} | "
                    f"{per_epoch * settings['epochs']:,} | {_cell_text(stats_s, best_s, cell)} "
                    f"| {per_epoch * budget['epochs']:,} | {_cell_text(stats_l, best_l, cell)} |")
    lines += ["", f"Same learning-rate search as above at {budget['epochs']} epochs "
              f"({len(long_)} runs).", ""]
    return lines


def _label(optimizer: str) -> str:
    return METHODS[optimizer].label


def _lr_text(row: dict) -> str:
    if LR_GRIDS[row["optimizer"]][0] == "linear":
        batch = row["global_batch"]
        if METHODS[row["optimizer"]].ramp:  # the LR of the first batch, kept
            batch = ramp_batches(batch, row["epochs"])[0]
        peak = linear_scaled_learning_rate(row["learning_rate"], batch, 256)
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
           budget: dict | None = None, extension: bool = False) -> None:
    from lars_hvd.files import atomic_write_text

    atomic_write_text(out / "table.md", markdown_table(rows, settings, command, budget,
                                                       extension))
    plot_accuracy(rows, settings, out / "accuracy_vs_batch.png")
    if extension and rows_for(rows, DEEP):
        plot_accuracy(rows, DEEP, out / "accuracy_vs_batch_resnet.png")
    plot_trust_ratios(rows_for(rows, settings), out / "trust_ratios.png")
