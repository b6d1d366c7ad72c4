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

The extension (``--parts``): the related methods at the large batches with the same search
(``RELATED``: a batch ramp in place of LR decay for SGD and LARS, Akiba et al.'s RMSprop
warm-up, LARC's clip), a 14-layer ResNet with and without BN (``DEEP``, ``DEEP_NO_BN``), and
the time to a target accuracy of every BN cell (``target_trials``: its best LR again with
``--target-accuracy``).

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

# The methods: an optimizer, how its learning rate is given, its grid and any flags of its
# own. Learning-rate grids: three values a factor of 4 apart around the method's usual
# setting, extended by further factors of 4 (at most EXTEND times) while the best value sits
# at an edge, so that no method is judged at the edge of its grid. SGD follows the
# linear-scaling rule (Goyal et al.: 0.1 per 256 examples, the middle value); LARS and LAMB
# take absolute LRs (their step is scaled per layer).


@dataclass(frozen=True)
class Method:
    label: str
    optimizer: str  # --optimizer
    scaling: str  # "linear": the grid is per 256 examples (of the first batch, with a ramp)
    grid: tuple[float, ...]
    flags: tuple[str, ...] = ()
    ramp: bool = False  # the batch grows to the cell's batch, and the LR does not decay


SGD_GRID = (0.025, 0.1, 0.4)  # per 256 examples
LARS_GRID = (2.5, 10.0, 40.0)
METHODS = {
    "sgd": Method("SGD + momentum + warmup", "sgd", "linear", SGD_GRID),
    "lars": Method("LARS", "lars", "none", LARS_GRID),
    "lamb": Method("LAMB", "lamb", "none", (0.0025, 0.01, 0.04)),
    # Smith et al. 2017, "Don't decay the learning rate, increase the batch size": the LR
    # stays at its peak (the linear rule of the first batch) while the batch doubles.
    "sgd_ramp": Method("SGD, batch ramp (no decay)", "sgd", "linear", SGD_GRID, ramp=True),
    "lars_ramp": Method("LARS, batch ramp (no decay)", "lars", "none", LARS_GRID, ramp=True),
    # Akiba et al. 2017: RMSprop first, momentum SGD from the end of the first epoch (c = 0.8,
    # p = 0.4 epochs; their 90-epoch run switched at 10 of 90 epochs, we at 1 of 5).
    "sgd_rmsprop": Method("SGD, RMSprop warm-up", "sgd", "linear", SGD_GRID,
                          ("--rmsprop-warmup-epochs", "1")),
    # LARC's clip: the local rate is min(lr, trust), so the global LR is a cap and takes
    # SGD's grid; eta 0.02 as apex's LARC (trust_coefficient=0.02) for clip mode.
    "lars_clip": Method("LARS, clip (LARC)", "lars", "linear", SGD_GRID,
                        ("--lars-mode", "clip", "--trust-coefficient", "0.02")),
}
LR_GRIDS = {name: (m.scaling, m.grid) for name, m in METHODS.items()}
LR_STEP = 4.0
EXTEND = 3
LINEAR_RULE = 0.1  # Goyal et al.'s SGD learning rate per 256 examples
RAMP_DOUBLINGS = 3  # a ramp starts at 1/8 of the cell's batch and doubles each epoch
FULL = {
    "models": ("small_cnn_bn", "small_cnn"),
    "batches": (128, 1024, 4096, 16384),
    "optimizers": ("sgd", "lars", "lamb"),
    "epochs": 5,
    "train_examples": None,
    "extra_seeds": (1, 2),
}
BUDGET_FACTOR = 4
CLOSE = 1.0  # points: cells whose best methods are this close get more seeds
# The extension, each a sweep of its own with the same search rule:
# the related methods where large batches fall short, beside the three above ...
RELATED = dict(FULL, batches=(4096, 16384), extra_seeds=(1,),
               optimizers=("sgd", "lars", "lamb", "sgd_ramp", "lars_ramp", "sgd_rmsprop",
                           "lars_clip"))
# ... a 14-layer ResNet (models/resnet_small.py) at three batches; SGD's middle LR is the
# linear rule, so "SGD at the linear rule" comes with its grid ...
DEEP = {"models": ("resnet14_bn",), "batches": (256, 2048, 8192),
        "optimizers": ("sgd", "lars", "lamb"), "epochs": 5, "train_examples": None,
        "extra_seeds": ()}
# ... and the same ResNet without BN at the small batch: does it train at all?
DEEP_NO_BN = dict(DEEP, models=("resnet14",), batches=(256,), optimizers=("sgd", "lars"))
PARTS = ("base", "deep", "related", "targets")  # in the order they run


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


def ramp_batches(batch: int, epochs: int) -> list[int]:
    """The global batch of each epoch of a ramp that ends at ``batch``: doubling each epoch
    from batch / 2**k (k = RAMP_DOUBLINGS, fewer for short runs), then ``batch``."""
    doublings = min(RAMP_DOUBLINGS, epochs - 1)
    return [batch >> max(0, doublings - epoch) for epoch in range(epochs)]


@dataclass(frozen=True)
class Trial:
    """One training run of a sweep: its settings, as ``argv`` passes them to
    ``lars_hvd.train``, and its ``key`` (the run directory's name and the row's id)."""

    model: str
    global_batch: int  # with a ramp: the last (largest) batch
    optimizer: str  # a METHODS name
    learning_rate: float  # as in the method's grid (per 256 with linear scaling)
    seed: int
    epochs: int
    train_examples: int | None
    target: float | None = None  # --target-accuracy: a time-to-target run

    def argv(self) -> list[str]:
        method = METHODS[self.optimizer]
        batch, scaling, lr = self.global_batch, method.scaling, self.learning_rate
        ramp = []
        if method.ramp:
            batches = ramp_batches(self.global_batch, self.epochs)
            batch = batches[0]
            if len(set(batches)) < 2:
                raise ValueError(f"a batch ramp needs at least 2 epochs, not {self.epochs}")
            ramp = ["--batch-schedule", ",".join(
                f"{epoch + 1}:{b}" for epoch, b in enumerate(batches) if epoch and b != batches[
                    epoch - 1]), "--decay", "none"]
            if scaling == "linear":  # the LR of the first batch, kept as the batch grows
                scaling, lr = "none", float(f"{lr * batch / 256:.6g}")
        # TensorBoard scalars (LR, trust ratios) about 10 times an epoch, every step at most.
        steps_per_epoch = (self.train_examples or FASHION_MNIST_TRAIN) // batch
        argv = ["--model", self.model, "--global-batch-size", str(batch),
                "--optimizer", method.optimizer, "--learning-rate", str(lr),
                "--lr-scaling", scaling, "--seed", str(self.seed), "--epochs", str(self.epochs),
                "--warmup-epochs", "1",
                "--log-every-steps", str(max(1, steps_per_epoch // 10)),
                # Few steps at large batch leave BN's moving averages stale, so test
                # accuracy lags training accuracy (docs/results/ablations shows by how much).
                "--bn-recompute-examples", "10000", *ramp, *method.flags]
        if self.train_examples:
            argv += ["--train-examples", str(self.train_examples)]
        if not self.model.endswith("_bn"):
            # Without BN, excluded biases would step at the raw LARS/LAMB LR, far too large
            # for them, and stop the network from training; adapt them like the kernels.
            argv.append("--no-exclude-low-rank")
        if self.target is not None:
            argv += ["--target-accuracy", f"{self.target:g}"]
        return argv

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.argv()).encode()).hexdigest()[:16]


def grid(settings: dict, seed: int = 0) -> list[Trial]:
    """Every run of the sweep; the smallest and the largest batch of each model come first,
    so that an interrupted sweep already holds the paper's comparison."""
    batches = sorted(settings["batches"])
    order = [batches[0], batches[-1], *batches[1:-1]] if len(batches) > 1 else batches
    return [
        Trial(model, batch, optimizer, lr, seed, settings["epochs"], settings["train_examples"])
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
    return [r for r in rows if r.get("target") is None and r["model"] in settings["models"]
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


def edge_extensions(rows: list[dict], settings: dict) -> list[Trial]:
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
        runs.append(Trial(*cell, float(f"{new:.6g}"), 0, settings["epochs"],
                        settings["train_examples"]))
    return runs


def table_rows(rows: list[dict], settings: dict, close: float = CLOSE) -> list[dict]:
    """The sweep's rows as its tables count them: seed 0, and the extra seeds that this
    sweep's own rule asked for (another sweep over the same cells, with more methods, may
    have rerun seeds of cells this one found far apart)."""
    rows = rows_for(rows, settings)
    wanted = {trial.key() for trial in seed_reruns(rows, settings, close)}
    return [r for r in rows if r["seed"] == 0 or r["key"] in wanted]


def seed_reruns(rows: list[dict], settings: dict, close: float) -> list[Trial]:
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
                    reruns.append(Trial(model, batch, r["optimizer"], r["learning_rate"], seed,
                                      settings["epochs"], settings["train_examples"]))
    return reruns
