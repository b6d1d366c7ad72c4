"""The study's bookkeeping (pure) and one tiny real sweep through lars_hvd.train."""

from __future__ import annotations

import json

import pytest

from lars_hvd import study
from lars_hvd.planning import cli, plan
from lars_hvd.study import report, sweep, targets


def row(model, batch, optimizer, lr, seed, acc):
    trial = study.Trial(model, batch, optimizer, lr, seed, 5, None)
    return {"key": trial.key(), **trial.__dict__, "status": "ok" if acc is not None else "diverged",
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
    longer = study.Trial("m", 4096, "lars", 10.0, 0, 20, None)
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


@pytest.mark.slow
@pytest.mark.fashion_mnist
def test_tiny_sweep_is_real_and_resumable(tmp_path, capsys):
    # One global batch, 4 real runs (3 SGD, 1 LARS: the grid's order) in two calls: the grid,
    # edges and seeds phases' choices, and the table and plots across batches, are checked on
    # rows above.
    argv = ["--quick", "--epochs", "2", "--train-examples", "2048", "--batches", "1024",
            "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")]
    out = sweep.main([*argv, "--max-runs", "2"])
    rows = study.load_rows(out / "runs.jsonl")
    assert len(rows) == 2
    assert all(r["status"] == "ok" or r["status"].startswith("diverged") for r in rows)
    assert {r["global_batch"] for r in rows} == {1024}
    assert all((tmp_path / "runs" / r["key"] / "plan.json").is_file() for r in rows)
    assert (out / "accuracy_vs_batch.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "table.md").read_text()
    assert "| 1,024 | 4 |" in table  # 2 epochs of 2 steps
    capsys.readouterr()
    sweep.main([*argv, "--max-runs", "2"])  # again: the 2 done runs are skipped, 2 more run
    assert "4 runs to do, 2 done" in capsys.readouterr().out  # 2 optimizers x 3 LRs
    again = study.load_rows(out / "runs.jsonl")
    assert len(again) == 4 and again[:2] == rows and again[3]["optimizer"] == "lars"
    assert (out / "trust_ratios.png").read_bytes()[:4] == b"\x89PNG"  # of the LARS run
    saved = json.loads((out / "runs.jsonl").read_text().splitlines()[0])
    assert {"argv", "seed", "test_accuracy", "wall_seconds"} <= set(saved)


# -- the extension: related methods, the ResNet, time to target --------------------------

def test_the_published_rows_keep_their_keys():
    """The extension's argv leaves the base grid's flags alone, so its 125 finished runs are
    found (and skipped) by the sweep instead of run again."""
    from pathlib import Path

    rows = study.load_rows(Path(__file__).parents[1] / "docs/results/runs.jsonl")
    base = [r for r in rows if r["optimizer"] in ("sgd", "lars", "lamb")
            and r.get("target") is None and r["model"].startswith("small_cnn")]
    assert len(base) >= 125
    for r in base:
        trial = study.Trial(r["model"], r["global_batch"], r["optimizer"], r["learning_rate"],
                        r["seed"], r["epochs"], r["train_examples"])
        assert trial.key() == r["key"] and trial.argv() == r["argv"]


def test_a_ramp_ends_at_the_cells_batch_and_keeps_the_first_batchs_lr():
    trial = study.Trial("small_cnn_bn", 16384, "sgd_ramp", 0.1, 0, 5, None)
    argv = trial.argv()

    def value(flag):
        return argv[argv.index(flag) + 1]

    assert value("--global-batch-size") == "2048"
    assert value("--batch-schedule") == "2:4096,3:8192,4:16384"
    assert (value("--decay"), value("--lr-scaling")) == ("none", "none")
    assert float(value("--learning-rate")) == 0.1 * 2048 / 256  # the linear rule at 2,048
    config, _ = cli.parse_args(argv)  # the run's own plan counts its steps
    assert plan.resolve(config, 1).total_steps == 29 + 14 + 7 + 3 + 3
    assert study.ramp_batches(1024, 2) == [512, 1024]  # short runs: fewer doublings
    lars = study.Trial("small_cnn", 4096, "lars_ramp", 10.0, 0, 5, None).argv()
    assert lars[lars.index("--learning-rate") + 1] == "10.0" and "--no-exclude-low-rank" in lars
    rms = study.Trial("resnet14_bn", 2048, "sgd_rmsprop", 0.1, 0, 5, None).argv()
    assert rms[rms.index("--rmsprop-warmup-epochs") + 1] == "1"
    assert "--no-exclude-low-rank" not in rms and "--batch-schedule" not in rms
    clip = study.Trial("small_cnn_bn", 4096, "lars_clip", 0.1, 0, 5, None).argv()
    assert clip[clip.index("--lars-mode") + 1] == "clip"
    assert clip[clip.index("--lr-scaling") + 1] == "linear"


def target_row(model, batch, optimizer, lr, target, epoch, seconds):
    trial = study.Trial(model, batch, optimizer, lr, 0, 5, None, target)
    return {"key": trial.key(), **trial.__dict__, "status": "ok", "test_accuracy": 0.9,
            "run_dir": "nowhere", "target_epoch": epoch, "time_to_target_seconds": seconds}


def test_targets_come_from_the_small_batch_and_rerun_each_cells_best():
    rows = [row("n_bn", 128, "sgd", 0.1, 0, 0.912), row("n_bn", 128, "sgd", 0.1, 1, 0.918),
            row("n_bn", 128, "lars", 10.0, 0, 0.91), row("n_bn", 4096, "lars", 40.0, 0, 0.95),
            row("n_bn", 4096, "lars", 10.0, 0, 0.80), row("n_bn", 4096, "sgd", 0.4, 0, None),
            row("n_bn", 4096, "lamb", 0.01, 0, 0.85), row("n", 128, "sgd", 0.1, 0, 0.95)]
    # seed 1 of sgd at 128 counts: the 128 cell is close (91.2 vs 91.0)
    settings = dict(SETTINGS, models=("n_bn", "n"), optimizers=("sgd", "lars", "lamb"))
    assert targets.target_for(rows, settings, "n_bn") == 0.90  # mean 91.5 - 1 -> 90
    assert targets.target_for(rows, settings, "nothing") is None
    runs = targets.target_trials(rows, settings)
    # the BN network only; every cell at its best LR whose final accuracy reached the
    # target (lamb at 4096 ended at 85%: not run again); a cell that only diverged: skipped
    assert sorted((r.model, r.global_batch, r.optimizer, r.learning_rate, r.target)
                  for r in runs) == [("n_bn", 128, "lars", 10.0, 0.9),
                                     ("n_bn", 128, "sgd", 0.1, 0.9),
                                     ("n_bn", 4096, "lars", 40.0, 0.9)]
    assert runs[0].argv()[-2:] == ["--target-accuracy", "0.9"]
    done = rows + [target_row("n_bn", 128, "sgd", 0.1, 0.9, 3, 41.2),
                   target_row("n_bn", 4096, "lars", 40.0, 0.9, None, None)]
    # target rows never enter the accuracy tables
    assert study.best_by_cell(study.rows_for(done, settings)) == study.best_by_cell(
        study.rows_for(rows, settings))
    table = "\n".join(report.target_table(done, [settings]))
    assert "### Time to 90% test top-1, `n_bn`" in table
    assert "| 128 | epoch 3, 41 s | not run yet |  |" in table
    assert "| 4,096 | diverged | not in 5 epochs | not reached (final 85.0%) |" in table


def test_a_wider_sweep_does_not_add_seeds_to_the_narrower_ones_table():
    """RELATED shares SGD's and LARS's cells with the base grid; seeds it reruns there (a new
    method was close) are not the base's: its table keeps one seed where its own rule did."""
    rows = ROWS + [row("m", 4096, "sgd_ramp", 0.1, 0, 0.815)]
    wide = dict(SETTINGS, batches=(4096,), optimizers=("sgd", "lars", "sgd_ramp"),
                extra_seeds=(1,))
    reruns = {(r.optimizer, r.seed) for r in study.seed_reruns(rows, wide, close=1.0)}
    assert reruns == {("lars", 1), ("sgd_ramp", 1), ("sgd", 1)}
    rows += [row("m", 4096, "lars", 10.0, 1, 0.70)]
    assert [r["seed"] for r in study.table_rows(rows, SETTINGS)
            if (r["global_batch"], r["optimizer"]) == (4096, "lars")] == [0]
    assert [r["seed"] for r in study.table_rows(rows, wide)
            if (r["global_batch"], r["optimizer"]) == (4096, "lars")] == [0, 1]
    assert "82.0% at LR 10 |" in report.markdown_table(rows, SETTINGS, "cmd")


def test_the_parts_run_in_order_and_a_ramp_needs_two_epochs():
    args = sweep.parse_args(["--parts", "related", "base", "--no-budget"])
    assert sweep.sweeps_of(args, study.FULL) == [study.FULL, study.RELATED]
    assert sweep.sweeps_of(sweep.parse_args([]), study.FULL) == [
        study.FULL, study.budget_settings(study.FULL), study.DEEP, study.DEEP_NO_BN,
        study.RELATED]
    assert sweep.sweeps_of(sweep.parse_args(["--quick"]), study.QUICK) == [study.QUICK]
    with pytest.raises(ValueError, match="at least 2 epochs, not 1"):
        study.Trial("m_bn", 1024, "sgd_ramp", 0.1, 0, 1, None).argv()
    table = report.markdown_table(ROWS, SETTINGS, "cmd", parts=("related",))
    assert "related methods" in table and "ResNet-14" not in table


def test_the_related_table_gives_a_ramps_batches_and_steps():
    rows = [row("m", 4096, "lars_ramp", 10.0, 0, 0.87), row("m", 4096, "sgd_ramp", 0.1, 0, 0.86)]
    settings = dict(study.RELATED, models=("m",), batches=(4096,))
    table = "\n".join(report.related_table(rows, settings))
    assert "| `m` | 4,096 | 70 (ramp: 232 steps, batch 512 to 4,096) |" in table
    assert "87.0% at LR 10" in table and "86.0% at 0.1/256 (= 0.2)" in table  # LR of 512


@pytest.mark.fashion_mnist
def test_a_ramp_run_with_a_target_records_its_steps_and_time(tmp_path):
    trial = study.Trial("small_cnn_bn", 1024, "sgd_ramp", 0.1, 0, 2, 2048, target=0.1)
    from lars_hvd import distributed

    distributed.init()
    result = sweep.run_trial(trial, tmp_path)
    assert result["status"] == "ok"
    assert result["steps"] == 2048 // 512 + 2048 // 1024
    assert result["target_epoch"] == 1 and result["time_to_target_seconds"] > 0  # chance: 10%
