"""--batch-schedule in the plan: parsing, each phase split over the workers, its LR, and the
dry run's projection per phase (no TensorFlow)."""

from __future__ import annotations

import pytest

from lars_hvd.errors import UsageError
from lars_hvd.planning import cost, dry_run, phases, profiles
from lars_hvd.planning.cli import parse_args
from lars_hvd.planning.plan import resolve

RESNET = ["--preset", "resnet50-imagenet-32k"]


def plan_of(*argv: str, world: int = 1024):
    config, _ = parse_args([*RESNET, "--dry-run", *argv])
    return config, resolve(config, world)


def test_two_phases_split_and_count_their_steps():
    _, plan = plan_of("--batch-schedule", "46:65536")
    first, second = plan.phases
    assert (first.first_epoch, first.last_epoch, first.global_batch_size) == (1, 45, 32768)
    assert (second.first_epoch, second.last_epoch, second.global_batch_size) == (46, 90, 65536)
    assert first.steps_per_epoch == 1_281_167 // 32768 == 39
    assert second.steps_per_epoch == 1_281_167 // 65536 == 19
    assert plan.total_steps == 45 * 39 + 45 * 19
    # 128 per worker at most (the preset): 64 per worker fits, 2 x 64 would too.
    assert (second.per_worker_batch, second.accumulation_steps) == (64, 1)
    assert "epochs 46-90: 65536 examples per step" in plan.describe()
    # Without a schedule: no phases, the plan as before.
    assert resolve(parse_args([*RESNET, "--dry-run"])[0], 1024).phases == ()


def test_accumulation_and_lr_follow_each_phase():
    _, plan = plan_of("--batch-schedule", "3:512,5:2048", "--epochs", "6", "--warmup-epochs", "1",
                      "--global-batch-size", "256", "--lr-scaling", "linear",
                      "--learning-rate", "0.1", "--max-per-worker-batch", "256", world=2)
    assert [(p.per_worker_batch, p.accumulation_steps) for p in plan.phases] == \
        [(128, 1), (256, 1), (256, 4)]
    assert [p.peak_learning_rate for p in plan.phases] == pytest.approx([0.1, 0.2, 0.8])
    _, absolute = plan_of("--batch-schedule", "3:512", "--epochs", "6", "--warmup-epochs", "1",
                          "--global-batch-size", "256", "--learning-rate", "2", world=2)
    assert [p.peak_learning_rate for p in absolute.phases] == [2.0, 2.0]


@pytest.mark.parametrize("schedule, message", [
    ("3-8192", r"'3-8192' is not EPOCH:BATCH; write e.g. --batch-schedule 31:65536"),
    ("1:65536", r"epoch 1 must be 2 or later; epoch 1's batch is --global-batch-size"),
    ("40:65536,40:131072", r"the epochs must increase, but 40 follows 40"),
    ("60:65536,40:131072", r"the epochs must increase, but 40 follows 60"),
    ("91:65536", r"epoch 91 is past --epochs 90"),
    ("40:16384", r"the batch must grow, but from epoch 40 it would be 16384, after 32768"),
    ("40:65537", r"--batch-schedule, from epoch 40: batch 65537 cannot be split over 1024 "
                 r"workers; the nearest valid sizes are 65536 and 66560"),
    ("40:1311744", r"--batch-schedule, from epoch 40: --global-batch-size 1311744 is larger "
                   r"than the 1281167 training examples"),
])
def test_bad_schedules_name_the_entry_and_the_fix(schedule, message):
    with pytest.raises(UsageError, match=message):
        plan_of("--batch-schedule", schedule)


def test_the_projection_prices_each_phase_and_sums_them():
    config, plan = plan_of("--batch-schedule", "46:65536")
    text = dry_run.projection(config, plan, "dgx1-v100", None)
    assert "phase 1-45 (global batch 32768)" in text and "phase 46-90 (global batch 65536)" in text
    hw = profiles.hardware("dgx1-v100")
    seconds = sum(p.steps * cost.project(hw, "resnet50", 1024, p.per_worker_batch,
                                         p.accumulation_steps).step_ms / 1e3
                  for p in plan.phases)
    assert f"whole run                {cost.duration(seconds)} over 2 phases" in text
    assert phases.text(()) == ""
