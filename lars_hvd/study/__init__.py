"""The paper's central result at small scale: test accuracy vs global batch, with and without LARS.

    python -m lars_hvd.study            # the full sweep (make study); resumable
    python -m lars_hvd.study --quick    # a small subset

Every run is a real ``lars_hvd.train`` run (its ``main()``, in this process), on Fashion-MNIST
with a fixed epoch budget, for each global batch x optimizer x learning rate of the grid, for
a network with batch norm and one without (the paper's AlexNet-BN vs AlexNet contrast).
Fairness: every optimizer gets the same search at every batch size -- three learning rates
a factor of 4 apart, extended by factors of 4 while the best is at an edge -- all recorded;
the table reports the best, and SGD at exactly the linear-scaling rule beside it. Where the
best optimizers of a cell are within ``--close`` points, their best LRs are rerun with more
seeds and the spread is shown. Then the largest batch again with 4x the epochs, for SGD and
LARS: whether the shortfall there is the optimizer's or the step budget's.

This package: the grid and the choice of runs (here), the sweep (``sweep``), the table and
plots (``report``). Results: one JSON row per run in ``<out>/runs.jsonl`` (finished runs
are skipped when the sweep is run again), and from those rows ``<out>/table.md``,
``<out>/accuracy_vs_batch.png`` and ``<out>/trust_ratios.png`` (the per-layer LARS trust
ratios of one large-batch run).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lars_hvd.data import DATASETS

FASHION_MNIST_TRAIN = DATASETS["fashion-mnist"].train

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
        steps_per_epoch = (self.train_examples or FASHION_MNIST_TRAIN) // self.global_batch
        argv = ["--model", self.model, "--global-batch-size", str(self.global_batch),
                "--optimizer", self.optimizer, "--learning-rate", str(self.learning_rate),
                "--lr-scaling", scaling, "--seed", str(self.seed), "--epochs", str(self.epochs),
                "--warmup-epochs", "1",
                "--log-every-steps", str(max(1, steps_per_epoch // 10)),
                # Few steps at large batch leave BN's moving averages stale, so test
                # accuracy lags training accuracy (docs/results/ablations shows by how much).
                "--bn-recompute-examples", "10000"]
        if self.train_examples:
            argv += ["--train-examples", str(self.train_examples)]
        if self.model == "small_cnn":
            # Without BN, excluded biases would step at the raw LARS/LAMB LR, far too large
            # for them, and stop the network from training; adapt them like the kernels.
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
