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
from lars_hvd.run.clock import StepClock


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
                   seconds_per_step, accumulation=1, logs=None):
    """Progress's lines over a run of 2 epochs; each epoch's end gets ``logs`` (what Keras
    and Evaluate hand it), by default a loss only."""
    from lars_hvd import distributed

    distributed.init(pin_gpu=False, set_threads=False)  # a world of one: rank 0 prints
    clock = Clock()
    monkeypatch.setattr(callbacks.time, "monotonic", clock)
    plan = dataclasses.replace(plan_of("--global-batch-size", "100", "--epochs", "2"),
                               steps_per_epoch=steps_per_epoch, accumulation_steps=accumulation)
    steps = StepClock(plan)
    # (Keras calls each hook of every callback in the list's order: the step clock first)
    run = [steps, callbacks.Progress(steps, every_steps, every_seconds)]
    model = SimpleNamespace(optimizer=SimpleNamespace(learning_rate=0.5, iterations=0))
    for callback in run:
        callback.model = model
        callback.on_train_begin()
    for epoch in range(2):
        for callback in run:
            callback.on_epoch_begin(epoch)
        for batch in range(steps_per_epoch * accumulation):
            clock.now += seconds_per_step / accumulation
            for callback in run:
                callback.on_train_batch_end(batch, {"loss": 1.5})
        clock.now += 100.0  # an evaluation: not training time
        for callback in run:
            callback.on_epoch_end(epoch, logs or {"loss": 1.25})
    return [line.split(" ", 2)[2] for line in capsys.readouterr().out.splitlines()]


def test_progress_every_n_steps_inside_an_epoch_and_a_line_at_its_end(monkeypatch, capsys):
    lines = progress_lines(monkeypatch, capsys, steps_per_epoch=10, every_steps=4,
                           every_seconds=1e9, seconds_per_step=1.0)
    assert [re.match(r"epoch (\d)/2( step \d+)?", line).group(0) for line in lines] == [
        "epoch 1/2 step 1", "epoch 1/2 step 4", "epoch 1/2 step 8", "epoch 1/2",
        "epoch 2/2 step 4", "epoch 2/2 step 8", "epoch 2/2"]
    # 100 images a step of 1 s; 6 steps left in epoch 1 after step 4; the run: 16 steps.
    assert "| loss 1.5000 | 100 images/s | lr 0.5 | ETA epoch 0:00:06, run 0:00:16" in lines[1]
    # The epoch's line: its 10 steps in 10 s (not the 100 s of evaluation), 10 steps left.
    assert lines[3] == "epoch 1/2 | loss 1.2500 | 100 images/s | lr 0.5 | ETA run 0:00:10 " \
        "(training only)"
    assert lines[6].endswith("| ETA run 0:00:00 (training only)")


def test_the_epoch_line_holds_accuracy_and_the_evaluation_once_evaluated(monkeypatch,
                                                                         capsys):
    lines = progress_lines(monkeypatch, capsys, steps_per_epoch=2, every_steps=50,
                           every_seconds=1e9, seconds_per_step=0.5,
                           logs={"loss": 0.5, "accuracy": 0.875, "val_accuracy": math.nan})
    assert lines[1].startswith("epoch 1/2 | loss 0.5000 | accuracy 0.8750 | 200 images/s")
    assert "val accuracy" not in lines[1]  # an epoch not evaluated
    lines = progress_lines(monkeypatch, capsys, steps_per_epoch=2, every_steps=50,
                           every_seconds=1e9, seconds_per_step=0.5,
                           logs={"loss": 0.5, "accuracy": 0.875, "val_accuracy": 0.8125})
    assert lines[1].startswith("epoch 1/2 | loss 0.5000 | accuracy 0.8750 | val accuracy "
                               "0.8125 | 200 images/s | lr 0.5 |")


def test_progress_at_least_every_m_seconds_when_steps_are_slow(monkeypatch, capsys):
    lines = progress_lines(monkeypatch, capsys, steps_per_epoch=10, every_steps=1000,
                           every_seconds=60, seconds_per_step=25.0)
    # 25 s a step: the first step, then whenever 60 s have passed (every 3rd step), and the
    # epoch's line; so never more than 75 s without a line.
    steps = [re.search(r"step (\d+)/10|$", line).group(1) for line in lines]
    assert steps == ["1", "4", "7", None, "3", "6", "9", None]


def test_progress_counts_optimizer_steps_not_micro_batches(monkeypatch, capsys):
    lines = progress_lines(monkeypatch, capsys, steps_per_epoch=4, every_steps=2,
                           every_seconds=1e9, seconds_per_step=2.0, accumulation=3)
    assert [re.search(r"step (\d)/4|$", line).group(1) for line in lines] == \
        ["1", "2", None, "2", None]
    assert "| 50 images/s |" in lines[1]  # 100 images per 2 s optimizer step
    assert "| 50 images/s |" in lines[2]  # the epoch's, likewise


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
                 "epoch 3/3 step 2/4 (50%)", "peak resident memory"):
        assert text in out, text
    # One line an epoch, the evaluated ones with the evaluation's accuracy; no line of
    # Keras's own, no evaluation lines (a quick evaluation), no last-step line.
    ends = re.findall(r"epoch (\d)/3 \| loss [\d.]+ \| accuracy [\d.]+ \|( val accuracy "
                      r"([\d.]+) \|)? \d+ images/s \| lr \S+ \| input wait", out)
    assert [(epoch, bool(val)) for epoch, val, _ in ends] == \
        [("1", False), ("2", True), ("3", True)], out
    assert float(ends[-1][2]) == pytest.approx(summary.test_accuracy, abs=1e-4)
    assert not re.search(r"evaluation (started|ended)|step 4/4|ms/step", out), out
