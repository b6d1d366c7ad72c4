"""Time to target: the accuracy each network aims at, and the runs that time it.

The target is the best small-batch accuracy less a point, rounded down to a whole percent;
each cell of a network with batch norm runs its best learning rate (seed 0) again with
``--target-accuracy``, which stops at the first per-epoch evaluation that reaches it and
records the epoch and MLPerf's time to it. A cell whose final accuracy (after batch-norm
statistics are recomputed, which can only help) is below the target is not run again: it is
reported as not reached, with that accuracy.
"""

from __future__ import annotations

import math

from lars_hvd.study import DEEP, Trial, accuracy, best_by_cell, table_rows

TARGET_MARGIN = 0.01  # the target: a whole percent at least 1 point below the small-batch best


def target_for(rows: list[dict], settings: dict, model: str) -> float | None:
    """The accuracy that ``model``'s time-to-target runs aim at: the best mean accuracy (over
    the seeds of its best LR) of any method at the sweep's smallest batch, less a point,
    rounded down to a whole percent. None before that batch has been run."""
    rows = [r for r in table_rows(rows, settings) if r["model"] == model
            and r["global_batch"] == min(settings["batches"])]
    means = []
    for cell, row in best_by_cell(rows).items():
        accs = [accuracy(r) for r in rows if (r["model"], r["global_batch"], r["optimizer"])
                == cell and r["learning_rate"] == row["learning_rate"]]
        means.append(sum(accs) / len(accs))
    if not means or max(means) <= TARGET_MARGIN:
        return None
    return math.floor(round(100 * (max(means) - TARGET_MARGIN), 6)) / 100


def best_cells(rows: list[dict], settings: dict, model: str) -> dict:
    """Every cell of ``model`` at the sweep's epoch budget, in any sweep -> its best row."""
    return best_by_cell([r for r in rows if r.get("target") is None and r["model"] == model
                         and r["epochs"] == settings["epochs"]
                         and r["train_examples"] == settings["train_examples"]])


def target_trials(rows: list[dict], settings: dict) -> list[Trial]:
    """For each cell of the sweep's networks with batch norm whose final accuracy reached the
    target: its best LR (seed 0) again, with ``--target-accuracy``. The target is the first
    sweep's (``settings``): the ``FULL`` smallest batch for the CNN, the ``DEEP`` one for the
    ResNet."""
    runs = []
    for model in settings["models"]:
        target = target_for(rows, settings, model)
        if target is None or not model.endswith("_bn"):
            continue
        for (_, batch, optimizer), row in sorted(best_cells(rows, settings, model).items()):
            if accuracy(row) >= target:
                runs.append(Trial(model, batch, optimizer, row["learning_rate"], 0,
                                settings["epochs"], settings["train_examples"], target))
    return runs


def target_sweeps(settings: dict) -> list[dict]:
    """The sweeps whose smallest batch sets a target: the base (the CNN's cells, of all its
    sweeps) and the ResNet's."""
    return [settings, DEEP]


def all_target_trials(rows: list[dict], settings: dict) -> list[Trial]:
    return [trial for sweep in target_sweeps(settings) for trial in target_trials(rows, sweep)]
