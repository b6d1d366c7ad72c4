"""The study's bookkeeping (pure) and one tiny real sweep through lars_hvd.train."""

from __future__ import annotations

import json

import pytest

from lars_hvd import study
from lars_hvd.data import fashion_mnist


def row(model, batch, optimizer, lr, seed, acc):
    run = study.Run(model, batch, optimizer, lr, seed, 5, None)
    return {"key": run.key(), **run.__dict__, "status": "ok" if acc is not None else "diverged",
            "test_accuracy": acc, "run_dir": "nowhere"}


ROWS = [
    row("m", 128, "sgd", 0.05, 0, 0.90), row("m", 128, "sgd", 0.2, 0, 0.91),
    row("m", 128, "lars", 3.0, 0, 0.905), row("m", 128, "lars", 10.0, 0, None),
    row("m", 4096, "sgd", 0.2, 0, 0.60), row("m", 4096, "lars", 10.0, 0, 0.82),
]
SETTINGS = {"models": ("m",), "batches": (128, 4096), "optimizers": ("sgd", "lars"),
            "epochs": 5, "train_examples": None, "extra_seeds": (1, 2)}


def test_best_by_cell_ranks_diverged_runs_last():
    best = study.best_by_cell(ROWS)
    assert best[("m", 128, "sgd")]["learning_rate"] == 0.2
    assert best[("m", 128, "lars")]["learning_rate"] == 3.0  # LR 10 diverged


def test_seed_reruns_only_where_close():
    reruns = study.seed_reruns(ROWS, SETTINGS, close=1.0)
    # At 128 the best are 0.5 points apart -> 2 extra seeds for each; at 4096, 22 apart.
    assert sorted((r.global_batch, r.optimizer, r.learning_rate, r.seed) for r in reruns) == [
        (128, "lars", 3.0, 1), (128, "lars", 3.0, 2), (128, "sgd", 0.2, 1), (128, "sgd", 0.2, 2)]


def test_table_shows_best_lr_and_seed_spread():
    rows = ROWS + [row("m", 128, "sgd", 0.2, 1, 0.89), row("m", 128, "sgd", 0.2, 2, 0.90)]
    table = study.markdown_table(rows, SETTINGS, "python -m lars_hvd.study")
    assert "| 128 | 2,340 | 90.0% (89.0-91.0, 3 seeds) at 0.2/256 (= 0.1) | 90.5% at LR 3 |" \
        in table
    assert "| 4,096 | 70 | 60.0% at 0.2/256 (= 3.2) | 82.0% at LR 10 |" in table
    assert "Produced by `python -m lars_hvd.study`" in table
    assert "Partial: 6 of the 12 grid runs are done" in table  # seed-0 rows of the grid


def test_every_optimizer_gets_as_many_learning_rates():
    assert len({len(grid) for _, grid in study.LR_GRIDS.values()}) == 1
    assert all(len(grid) >= 3 for _, grid in study.LR_GRIDS.values())


@pytest.mark.skipif(not fashion_mnist.default_dir().is_dir(),
                    reason="dataset-fashion-mnist is not installed (make install installs it)")
def test_tiny_sweep_is_real_and_resumable(tmp_path, capsys):
    argv = ["--quick", "--epochs", "2", "--train-examples", "2048", "--batches", "256", "1024",
            "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]
    out = study.main(argv)
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
    study.main(argv)  # again: everything is cached
    assert "0 runs to do" in capsys.readouterr().out
    assert len(study.load_rows(out / "runs.jsonl")) == len(rows)
    saved = json.loads((out / "runs.jsonl").read_text().splitlines()[0])
    assert {"argv", "seed", "test_accuracy", "wall_seconds"} <= set(saved)
