"""Training through --batch-schedule: the LR read in epochs across phases, each phase the
same training as one worker accumulating, and resume across phases. (Elastic training across
a phase change is test_elastic.py's; a stop and resume in phase 2 under horovodrun is
test_preemption.py's.)"""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_preemption import SignalAtStep, final_tensors

from lars_hvd import horovodrun
from lars_hvd.planning.cli import parse_args
from lars_hvd.planning.plan import resolve
from lars_hvd.planning.schedule import build_schedule
from lars_hvd.signals import Preempted
from lars_hvd.train import main

pytestmark = pytest.mark.core

# 8 steps an epoch at 512, then 4 at 1024 from epoch 2: 16 steps in 3 epochs.
FLAGS = ["--train-examples", "4096", "--global-batch-size", "512", "--epochs", "3",
         "--warmup-epochs", "1", "--batch-schedule", "2:1024", "--deterministic"]


@pytest.mark.parametrize("scaling", ["none", "linear"])
def test_each_phase_reads_the_schedule_at_its_own_epochs(scaling):
    config, _ = parse_args(["--train-examples", "60000", "--global-batch-size", "1000",
                            "--epochs", "10", "--warmup-epochs", "2", "--lr-scaling", scaling,
                            "--learning-rate", "0.5", "--batch-schedule", "3:3000,6:6000",
                            "--max-per-worker-batch", "2000"])
    plan = resolve(config, 1)
    first = build_schedule(config, plan.for_epoch(0))  # 60 steps an epoch

    def lr_at(epoch: float) -> float:
        """The LR of the step that starts at ``epoch`` (fractional), in its phase."""
        view = plan.for_epoch(int(epoch))
        start = view.phases[view.phase].first_epoch - 1
        step = plan.step_at_epoch(start) + round((epoch - start) * view.steps_per_epoch)
        return float(build_schedule(config, view)(view.iterations_at(step + 1) - 1))

    for epoch, factor in [(0.5, 1), (2.0, 3), (3.5, 3), (5.0, 6), (9.9, 6)]:
        expected = float(first(round(epoch * 60)))
        if scaling == "linear":
            expected *= factor
        assert lr_at(epoch) == pytest.approx(expected, rel=1e-5), epoch
    # Accumulation follows the batch: 1 x 1000, then 2 x 1500, then 3 x 2000.
    assert [(p.accumulation_steps, p.per_worker_batch) for p in plan.phases] == \
        [(1, 1000), (2, 1500), (3, 2000)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    summary = main([*FLAGS, "--run-dir", str(run_dir)])
    assert summary.batch_schedule == [512, 1024] and "global batch 512 -> 1024" in summary.line()
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "epoch-3"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 16
    return run_dir


@pytest.mark.fashion_mnist
def test_a_signal_in_phase_2_resumes_bitwise(uninterrupted, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(Preempted) as stopped:
        main([*FLAGS, "--run-dir", str(run_dir), "--signal-check-seconds", "0"],
             extra_callbacks=[SignalAtStep(9, signal.SIGTERM)])
    assert stopped.value.step == 10  # the 2nd step of epoch 2 (at 1024), seen at the next
    assert "after optimizer step 10 of 16 (epoch 2, step 2 of 4)" in capsys.readouterr().out
    main([*FLAGS, "--run-dir", str(run_dir), "--resume"])
    out = capsys.readouterr().out
    assert re.search(r"resumed from \S+steps/step-10: epoch 1, step 10, 2 of its steps done",
                     out), out
    whole, resumed = final_tensors(uninterrupted), final_tensors(run_dir)
    assert sorted(whole) == sorted(resumed)
    for key, value in whole.items():
        np.testing.assert_array_equal(value, resumed[key], err_msg=key)


@pytest.mark.fashion_mnist
def test_resume_from_the_epoch_before_a_phase_change_is_bitwise(uninterrupted, tmp_path):
    from test_train import StopAfterEpochs

    run_dir = tmp_path / "run"
    first = main([*FLAGS, "--run-dir", str(run_dir)], extra_callbacks=[StopAfterEpochs(1)])
    assert first.epochs_run == 1
    main([*FLAGS, "--run-dir", str(run_dir), "--resume"])
    whole, resumed = final_tensors(uninterrupted), final_tensors(run_dir)
    for key, value in whole.items():
        np.testing.assert_array_equal(value, resumed[key], err_msg=key)


def epoch_weights(run_dir: Path, epoch: int) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / f"epoch-{epoch}"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith("model/") and k.endswith("VARIABLE_VALUE")}


@pytest.mark.multiprocess
@pytest.mark.fashion_mnist
def test_each_phase_on_2_workers_equals_1_worker_accumulating(tmp_path):
    """The global batch held fixed across worlds: one worker accumulating and two workers see
    the same global batches (the data order is keyed on seed and epoch only), so they take
    the same steps. Phase 1: 2 x 256 vs 1 x 2 x 256; phase 2 (from epoch 2): 2 x 2 x 256 vs
    1 x 4 x 256. Within 1e-5: float32 sums taken in another order (local accumulation vs
    allreduce). No batch norm: BN normalizes each micro-batch by its own statistics in both
    runs, but its moving averages are per process and not all-reduced, so the saved BN
    statistics differ even when every trained weight agrees."""
    argv = [sys.executable, "-m", "lars_hvd.train", "--model", "small_cnn",
            "--no-exclude-low-rank", "--learning-rate", "1", "--train-examples", "2048",
            "--global-batch-size", "512", "--epochs", "2", "--batch-schedule", "2:1024",
            "--max-per-worker-batch", "256", "--warmup-epochs", "0.5"]
    runs = {}
    for np_ in (1, 2):
        result = horovodrun.run([*argv, "--run-dir", str(tmp_path / f"np{np_}")], np_=np_,
                                timeout=300)
        assert result.returncode == 0, result.stdout[-4000:]
        runs[np_] = result.stdout
    assert "512 examples per optimizer step = 1 workers x 2 accumulation step(s)" in runs[1]
    assert "512 examples per optimizer step = 2 workers x 1 accumulation step(s)" in runs[2]
    assert "1024 examples per optimizer step = 1 workers x 4 accumulation step(s)" in runs[1]
    assert "1024 examples per optimizer step = 2 workers x 2 accumulation step(s)" in runs[2]
    for epoch in (1, 2):  # the end of each phase
        a, b = epoch_weights(tmp_path / "np1", epoch), epoch_weights(tmp_path / "np2", epoch)
        assert a.keys() == b.keys() and len(a) == 8
        for key in a:
            error = np.linalg.norm(a[key] - b[key]) / np.linalg.norm(a[key])
            assert error < 1e-5, (epoch, key, error)
