"""The study's table and plots, made from its rows (``lars_hvd.study``)."""

from __future__ import annotations

import math
from pathlib import Path

from lars_hvd.planning.plan import linear_scaled_learning_rate
from lars_hvd.study import (
    CLOSE,
    DEEP,
    DEEP_NO_BN,
    EXTEND,
    FASHION_MNIST_TRAIN,
    LINEAR_RULE,
    LR_GRIDS,
    LR_STEP,
    METHODS,
    RAMP_DOUBLINGS,
    RELATED,
    accuracy,
    best_by_cell,
    grid,
    ramp_batches,
    rows_for,
    table_rows,
)
from lars_hvd.study.targets import best_cells, target_for, target_sweeps


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
    rows = table_rows(rows, settings)
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
    rows = table_rows(rows, settings)
    optimizers = settings["optimizers"]
    grids = "; ".join(f"{_label(o)}: {', '.join(f'{v:g}' for v in LR_GRIDS[o][1])}"
                      + (" per 256 examples (linear scaling)" if LR_GRIDS[o][0] == "linear"
                         else "") for o in optimizers)
    planned = {trial.key() for trial in grid(settings)}
    done = len(planned & {r["key"] for r in rows})
    progress = "" if done == len(planned) else (
        f" **Partial: {done} of the {len(planned)} grid runs are done**; run the same "
        f"command again to continue.")
    extra = len(settings["extra_seeds"])
    seeds = (f"Where the best optimizers of a cell were within {CLOSE:g} point, their best LRs "
             f"were rerun with {extra} more seed{'s' if extra > 1 else ''} (mean and range "
             f"shown). " if extra else "One seed per run (no seed reruns: budget). ")
    return (f"Learning rates (best shown): {grids}; where the best was at an edge of what "
            f"was tried, the grid went on by factors of {LR_STEP:g} (up to {EXTEND} more), "
            f"for every optimizer alike. {seeds}"
            f"Every run: linear warmup over 1 epoch, then polynomial decay of power 2 to 0"
            f"{' (a ramp: no decay)' if any(METHODS[o].ramp for o in optimizers) else ''}; "
            f"momentum 0.9; weight decay 5e-4; BN statistics recomputed "
            f"over 10,000 training examples before the test. {len(rows)} runs.{progress}")


def markdown_table(rows: list[dict], settings: dict, command: str,
                   budget: dict | None = None, parts: tuple[str, ...] = ()) -> str:
    """The study's tables: the base grid (and its longer budget), then the extension's
    ``parts`` ("deep", "related", "targets") that the sweep ran."""
    lines = [*model_tables(rows, settings), search_note(rows, settings), ""]
    if budget is not None:
        lines += budget_table(rows, settings, budget)
    if "deep" in parts:
        lines += ["## A deeper network: ResNet-14 (`models/resnet_small.py`)", ""]
        for deep in (DEEP, DEEP_NO_BN):
            lines += [*model_tables(rows, deep), search_note(rows, deep), ""]
    if "related" in parts:
        lines += related_table(rows, RELATED)
    if "targets" in parts:
        lines += target_table(rows, target_sweeps(settings))
    lines += [f"Produced by `{command}` on 2 CPU cores; every run is in `runs.jsonl`.", ""]
    return "\n".join(lines)


def related_table(rows: list[dict], settings: dict) -> list[str]:
    """The related methods beside SGD, LARS and LAMB where the large batches fall short."""
    rows = table_rows(rows, settings)
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
            steps = (f"{examples // batch * settings['epochs']:,} (ramp: {ramp_steps:,} steps, "
                     f"batch {ramp[0]:,} to {batch:,})")
            cells = [_cell_text(stats, best, (model, batch, o)) for o in optimizers]
            lines.append(f"| `{model}` | {batch:,} | {steps} | " + " | ".join(cells) + " |")
    lines += ["", f"A ramp starts at 1/{2 ** RAMP_DOUBLINGS} of the cell's batch and doubles "
              "at each epoch until it reaches it (the column's batch); its LR stays at the "
              "peak after the warmup "
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
            cells = best_cells(rows, settings, model)
            if target is None or not model.endswith("_bn") or not cells:
                continue
            timed = {(r["global_batch"], r["optimizer"]): r for r in rows
                     if r.get("target") == target and r["model"] == model
                     and r["epochs"] == settings["epochs"]}
            optimizers = [o for o in METHODS if any(c[2] == o for c in cells)]
            lines += [f"### Time to {100 * target:g}% test top-1, `{model}`", "",
                      "| global batch | " + " | ".join(_label(o) for o in optimizers) + " |",
                      "|---|" + "---|" * len(optimizers)]
            for batch in sorted({c[1] for c in cells}):
                texts = []
                for o in optimizers:
                    best = cells.get((model, batch, o))
                    if best is None:
                        texts.append("")
                    elif (batch, o) in timed:
                        texts.append(_target_text(timed[batch, o], settings))
                    elif best["test_accuracy"] is None:
                        texts.append("diverged")
                    elif accuracy(best) < target:
                        texts.append(f"not reached (final {100 * best['test_accuracy']:.1f}%)")
                    else:
                        texts.append("not run yet")
                lines.append(f"| {batch:,} | " + " | ".join(texts) + " |")
            lines += ["", f"The target: the best small-batch accuracy (batch "
                      f"{min(settings['batches']):,}) less 1 point, rounded down to a whole "
                      f"percent. Each cell whose final accuracy reached it: its best LR (seed 0) "
                      f"again with `--target-accuracy {target:g}`; epochs, and seconds from the "
                      f"start of training to the end of the evaluation that reached it "
                      f"(MLPerf's count: every epoch, evaluation and checkpoint between). The "
                      f"per-epoch evaluations use the moving BN statistics (as MLPerf's do), the "
                      f"final accuracy the recomputed ones, so a cell can end above the target "
                      f"and still not reach it at an epoch's end. Cells whose final accuracy "
                      f"(the best of the grid) is below the target are not run again.", ""]
    return lines


def _target_text(row: dict, settings: dict) -> str:
    if row["test_accuracy"] is None:
        return "diverged"
    if row.get("target_epoch") is None:
        return f"not in {settings['epochs']} epochs"
    return f"epoch {row['target_epoch']}, {row['time_to_target_seconds']:.0f} s"


def budget_table(rows: list[dict], settings: dict, budget: dict) -> list[str]:
    """The largest batch at the sweep's epoch budget and at the longer one, side by side."""
    short, long_ = table_rows(rows, settings), table_rows(rows, budget)
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

    rows = table_rows(rows, settings)
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
           budget: dict | None = None, parts: tuple[str, ...] = ()) -> None:
    from lars_hvd.files import atomic_write_text

    atomic_write_text(out / "table.md", markdown_table(rows, settings, command, budget, parts))
    plot_accuracy(rows, settings, out / "accuracy_vs_batch.png")
    if "deep" in parts and rows_for(rows, DEEP):
        plot_accuracy(rows, DEEP, out / "accuracy_vs_batch_resnet.png")
    plot_trust_ratios(table_rows(rows, settings), out / "trust_ratios.png")
