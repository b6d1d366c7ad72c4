"""Evaluation sized to the model, and what a batch job's log shows while it runs."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from types import SimpleNamespace

import pytest

from lars_hvd.planning.cli import parse_args
from lars_hvd.planning.plan import resolve
from lars_hvd.run import callbacks


def plan_of(*argv: str, world: int = 1):
    return resolve(parse_args(list(argv))[0], world)


def test_the_evaluation_batch_is_the_per_worker_batch_unless_given():
    plan = plan_of("--preset", "resnet50-imagenet-32k", world=64)
    assert plan.per_worker_batch == 128 and plan.eval_batch_size == 128
    assert plan_of("--eval-batch-size", "100").eval_batch_size == 100
    assert plan_of("--global-batch-size", "512", world=2).eval_batch_size == 256


def test_evaluation_frequency_keeps_the_last_epoch():
    plan = plan_of("--epochs", "10", "--eval-every-epochs", "4")
    assert [e for e in range(1, 11) if plan.evaluates_after(e)] == [4, 8, 10]
    assert "after every 4 epochs and the last" in plan.describe()


def test_an_evaluation_subset_is_named_in_the_plan():
    plan = plan_of("--eval-examples", "3000", world=2)
    assert (plan.eval_examples, plan.eval_set_examples) == (3000, 10000)
    assert "3000 examples of 10000 (--eval-examples), about 1500 per worker" in plan.describe()
    assert plan_of("--eval-examples", "50000").eval_examples == 10000  # no more than the set


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def progress_lines(monkeypatch, capsys, *, steps_per_epoch, every_steps, every_seconds,
                   seconds_per_step, accumulation=1):
    from lars_hvd import distributed

    distributed.init(pin_gpu=False, set_threads=False)  # a world of one: rank 0 prints
    clock = Clock()
    monkeypatch.setattr(callbacks.time, "monotonic", clock)
    plan = dataclasses.replace(plan_of("--global-batch-size", "100", "--epochs", "2"),
                               steps_per_epoch=steps_per_epoch, accumulation_steps=accumulation)
    progress = callbacks.Progress(plan, every_steps, every_seconds)
    progress.model = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=0.5,
                                                               iterations=0))
    for epoch in range(2):
        progress.on_epoch_begin(epoch)
        for batch in range(steps_per_epoch * accumulation):
            clock.now += seconds_per_step / accumulation
            progress.on_train_batch_end(batch, {"loss": 1.5})
    return [line for line in capsys.readouterr().out.splitlines() if " step " in line]


def test_progress_every_n_steps_and_at_each_epoch_end(monkeypatch, capsys):
    lines = progress_lines(monkeypatch, capsys, steps_per_epoch=10, every_steps=4,
                           every_seconds=1e9, seconds_per_step=1.0)
    steps = [re.search(r"epoch (\d)/2 step (\d+)/10", line).groups() for line in lines]
    assert steps == [("1", "1"), ("1", "4"), ("1", "8"), ("1", "10"),
                     ("2", "4"), ("2", "8"), ("2", "10")]
    # 100 images a step of 1 s; 6 steps left in epoch 1 after step 4; the run: 16 steps.
    assert "| loss 1.5000 | 100 images/s | lr 0.5 | ETA epoch 0:00:06, run 0:00:16" in lines[1]


def test_progress_at_least_every_m_seconds_when_steps_are_slow(monkeypatch, capsys):
    lines = progress_lines(monkeypatch, capsys, steps_per_epoch=10, every_steps=1000,
                           every_seconds=60, seconds_per_step=25.0)
    # 25 s a step: the first step, then whenever 60 s have passed (every 3rd step), and the
    # epoch's last step; so never more than 75 s without a line.
    steps = [int(re.search(r"step (\d+)/10", line).group(1)) for line in lines]
    assert steps == [1, 4, 7, 10, 3, 6, 9, 10]


def test_progress_counts_optimizer_steps_not_micro_batches(monkeypatch, capsys):
    lines = progress_lines(monkeypatch, capsys, steps_per_epoch=4, every_steps=2,
                           every_seconds=1e9, seconds_per_step=2.0, accumulation=3)
    assert [re.search(r"step (\d)/4", line).group(1) for line in lines] == \
        ["1", "2", "4", "2", "4"]
    assert "| 50 images/s |" in lines[1]  # 100 images per 2 s optimizer step


@pytest.mark.fashion_mnist
def test_a_run_evaluates_a_subset_every_n_epochs_and_says_so(tmp_path, capsys):
    from lars_hvd.train import main

    summary = main(["--train-examples", "2048", "--global-batch-size", "512", "--epochs", "3",
                    "--eval-every-epochs", "2", "--eval-examples", "3000",
                    "--progress-every-steps", "2", "--run-dir", str(tmp_path / "run")])
    out = capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    evaluated = [not math.isnan(float(row["val_accuracy"])) for row in rows]
    assert evaluated == [False, True, True]
    assert summary.test_examples == 3000 and summary.test_set_examples == 10000
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(summary.test_accuracy)
    assert "(a subset: 3000 of 10000 examples)" in summary.line()
    for text in ("epoch 1/3 step 1/4 (25%)", "epoch 1/3 step 2/4 (50%)",
                 "epoch 3/3 step 4/4 (100%)", "epoch 2: evaluation started",
                 "epoch 3: evaluation ended in", "peak resident memory"):
        assert text in out, text
    assert "epoch 1: evaluation" not in out
