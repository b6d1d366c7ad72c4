"""The study's bookkeeping (pure) and one tiny real sweep through lars_hvd.train."""

from __future__ import annotations

import json

import pytest

from lars_hvd import study
from lars_hvd.study import report, sweep


def row(model, batch, optimizer, lr, seed, acc):
    run = study.Run(model, batch, optimizer, lr, seed, 5, None)
    return {"key": run.key(), **run.__dict__, "status": "ok" if acc is not None else "diverged",
            "test_accuracy": acc, "run_dir": "nowhere"}


ROWS = [
    row("m", 128, "sgd", 0.1, 0, 0.90), row("m", 128, "sgd", 0.4, 0, 0.91),
    row("m", 128, "lars", 10.0, 0, 0.905), row("m", 128, "lars", 40.0, 0, None),
    row("m", 4096, "sgd", 0.1, 0, 0.60), row("m", 4096, "lars", 10.0, 0, 0.82),
]
SETTINGS = {"models": ("m",), "batches": (128, 4096), "optimizers": ("sgd", "lars"),
            "epochs": 5, "train_examples": None, "extra_seeds": (1, 2)}


def test_best_by_cell_ranks_diverged_runs_last():
    best = study.best_by_cell(ROWS)
    assert best[("m", 128, "sgd")]["learning_rate"] == 0.4
    assert best[("m", 128, "lars")]["learning_rate"] == 10.0  # LR 40 diverged


def test_seed_reruns_only_where_close():
    reruns = study.seed_reruns(ROWS, SETTINGS, close=1.0)
    # At 128 the best are 0.5 points apart -> 2 extra seeds for each; at 4096, 22 apart.
    assert sorted((r.global_batch, r.optimizer, r.learning_rate, r.seed) for r in reruns) == [
        (128, "lars", 10.0, 1), (128, "lars", 10.0, 2), (128, "sgd", 0.4, 1), (128, "sgd", 0.4, 2)]


def test_rows_of_another_epoch_budget_are_kept_apart():
    longer = study.Run("m", 4096, "lars", 10.0, 0, 20, None)
    rows = ROWS + [{"key": longer.key(), **longer.__dict__, "status": "ok",
                    "test_accuracy": 0.99, "run_dir": "nowhere"}]
    assert study.best_by_cell(study.rows_for(rows, SETTINGS))[("m", 4096, "lars")][
        "test_accuracy"] == 0.82
    budget = study.budget_settings(SETTINGS)
    assert (budget["batches"], budget["epochs"]) == ((4096,), 5 * study.BUDGET_FACTOR)
    assert study.best_by_cell(study.rows_for(rows, budget))[("m", 4096, "lars")][
        "test_accuracy"] == 0.99
    table = report.markdown_table(rows, SETTINGS, "cmd", budget)
    assert "| `m` | 4,096 | LARS | 70 | 82.0% at LR 10 | 280 | 99.0% at LR 10 |" in table


def test_edge_extensions_go_on_while_the_best_lr_is_at_an_edge():
    # sgd at 128: best 0.4 is the top of what was tried -> 1.6; lars at 128: 10 of (10, 40),
    # the bottom -> 2.5; at 4096 each cell has one LR, the best, so both edges: the rule
    # tries the lower side first.
    runs = study.edge_extensions(ROWS, SETTINGS)
    assert sorted((r.global_batch, r.optimizer, r.learning_rate) for r in runs) == [
        (128, "lars", 2.5), (128, "sgd", 1.6), (4096, "lars", 2.5), (4096, "sgd", 0.025)]
    # Interior best: nothing more. Two steps past the base grid: stop.
    interior = [row("m", 128, "sgd", lr, 0, acc) for lr, acc in
                ((0.025, 0.8), (0.1, 0.9), (0.4, 0.85))]
    assert study.edge_extensions(interior, SETTINGS) == []
    lowest = 0.025 / study.LR_STEP ** study.EXTEND  # EXTEND steps past the base grid
    far = [row("m", 128, "sgd", lr, 0, acc) for lr, acc in
           ((lowest, 0.9), (0.025 / 4, 0.8), (0.025, 0.7), (0.1, 0.6), (0.4, 0.5))]
    assert study.edge_extensions(far, SETTINGS) == []
    # A tie (every LR at chance, 10%): the lowest LR reached the best too -> go lower.
    chance = [row("m", 128, "sgd", lr, 0, 0.1) for lr in (0.00625, 0.025, 0.1, 0.4)]
    assert [r.learning_rate for r in study.edge_extensions(chance, SETTINGS)] == [0.0015625]


def test_table_shows_best_lr_and_seed_spread():
    rows = ROWS + [row("m", 128, "sgd", 0.4, 1, 0.89), row("m", 128, "sgd", 0.4, 2, 0.90)]
    table = report.markdown_table(rows, SETTINGS, "python -m lars_hvd.study")
    # columns: SGD best LR | SGD at the linear rule (0.1/256, seed 0) | LARS
    assert ("| 128 | 2,340 | 90.0% (89.0-91.0, 3 seeds) at 0.4/256 (= 0.2) | 90.0% | "
            "90.5% at LR 10 |") in table
    assert "| 4,096 | 70 | 60.0% at 0.1/256 (= 1.6) | 60.0% | 82.0% at LR 10 |" in table
    assert "Produced by `python -m lars_hvd.study`" in table
    assert "Partial: 6 of the 12 grid runs are done" in table  # seed-0 rows of the grid


def test_every_optimizer_gets_as_many_learning_rates():
    assert len({len(grid) for _, grid in study.LR_GRIDS.values()}) == 1
    assert all(len(grid) >= 3 for _, grid in study.LR_GRIDS.values())


@pytest.mark.fashion_mnist
def test_tiny_sweep_is_real_and_resumable(tmp_path, capsys):
    argv = ["--quick", "--epochs", "2", "--train-examples", "2048", "--batches", "256", "1024",
            "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]
    out = sweep.main(argv)
    rows = study.load_rows(out / "runs.jsonl")
    assert len(rows) >= 12  # 2 batches x 2 optimizers x 3 LRs (+ seeds where close)
    assert all(r["status"] == "ok" or r["status"].startswith("diverged") for r in rows)
    assert {r["global_batch"] for r in rows} == {256, 1024}
    assert all((tmp_path / "runs" / r["key"] / "plan.json").is_file() for r in rows)
    for name in ("table.md", "accuracy_vs_batch.png", "trust_ratios.png"):
        assert (out / name).is_file(), name
    assert (out / "accuracy_vs_batch.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "table.md").read_text()
    assert "| 256 | 16 |" in table and "| 1,024 | 4 |" in table
    capsys.readouterr()
    sweep.main(argv)  # again: everything is cached
    assert "0 runs to do" in capsys.readouterr().out
    assert len(study.load_rows(out / "runs.jsonl")) == len(rows)
    saved = json.loads((out / "runs.jsonl").read_text().splitlines()[0])
    assert {"argv", "seed", "test_accuracy", "wall_seconds"} <= set(saved)
