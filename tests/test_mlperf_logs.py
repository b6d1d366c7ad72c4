"""lars_hvd.planning.mlperf_logs on small logs written here in MLPerf's two formats, and the
cost model's use of what it derives."""

from __future__ import annotations

import json

import pytest

from lars_hvd.errors import UsageError
from lars_hvd.planning import cost_validation, mlperf_logs, profiles

IMAGES = 1000  # train_samples of the written logs


def records(start: float, minutes: float, blocks: list[tuple[int, float]], last_epoch: int):
    """(seconds, key, value, metadata) of one run: its blocks as (epochs, seconds of
    training), each followed by an evaluation of 0.5 s."""
    out = [(start, "run_start", None, {}), (start, "global_batch_size", 100, {}),
           (start, "train_samples", IMAGES, {})]
    clock, epoch = start + 5.0, 0  # 5 s of start-up before the first block
    for count, seconds in blocks:
        out.append((clock, "block_start", None, {"first_epoch_num": epoch + 1,
                                                 "epoch_count": count}))
        clock, epoch = clock + seconds, epoch + count
        out.append((clock, "eval_start", None, {"epoch_num": epoch}))
        clock += 0.5
        out.append((clock, "eval_accuracy", 0.7, {"epoch_num": epoch}))
    out[-1] = (clock, "eval_accuracy", 0.76, {"epoch_num": last_epoch})
    out.append((start + 60 * minutes, "run_stop", None, {"status": "success"}))
    return out


def new_format(rows) -> str:
    return "\n".join(["noise before", *(":::MLLOG " + json.dumps(
        {"time_ms": 1e3 * t, "key": k, "value": v, "metadata": m}) for t, k, v, m in rows)])


def old_format(rows) -> str:
    return "\n".join(f":::MLL {t:.3f} {k}: " + json.dumps({"value": v, "metadata": m})
                     for t, k, v, m in rows)


@pytest.mark.parametrize("write", [new_format, old_format])
def test_steady_rate_epochs_and_time_to_train_by_hand(tmp_path, write):
    # A run's first block is start-up; after it, with each evaluation's 0.5 s, 2 epochs in
    # 4 s, 4 in 10 s, 1 in 5 s: 500, 400 and 200 images/s. Five runs: the score drops the
    # fastest and the slowest.
    for i, minutes in enumerate([1.0, 2.0, 3.0, 4.0, 9.0]):
        rows = records(100.0 * i, minutes, [(2, 30.0), (2, 3.5), (4, 9.5), (1, 4.5)],
                       8 + i % 2)
        (tmp_path / f"result_{i}.txt").write_text(write(rows))
    s = mlperf_logs.read(tmp_path)
    assert s.images_per_second == pytest.approx(400)  # the median of 5 x [500, 400, 200]
    assert s.global_batch == 100 and s.runs == 5 and s.epochs == 8
    assert s.minutes == pytest.approx(3.0)  # mean of 2, 3, 4


def test_the_median_is_over_every_block_of_every_run(tmp_path):
    rates = {0: [(2, 3.5)], 1: [(2, 3.5), (2, 4.5)], 2: [(2, 7.5)]}  # 500; 500, 400; 250
    for i, blocks in rates.items():
        rows = records(0.0, 1.0, [(1, 30.0), *blocks], 5)
        (tmp_path / f"result_{i}.txt").write_text(new_format(rows))
    assert mlperf_logs.read(tmp_path).images_per_second == pytest.approx(450)


def test_a_folder_without_logs_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(UsageError, match="holds no result_.*txt; give a submission's folder"):
        mlperf_logs.read(tmp_path)
    assert mlperf_logs.main([str(tmp_path)]) == 2
    assert "lars_hvd.planning.mlperf_logs: error: " in capsys.readouterr().err


def test_the_calibration_rows_are_the_constants_the_profiles_are_set_by():
    rows = {r.run: r for r in cost_validation.MLPERF_RUNS}
    calibrating = [r for r in rows.values() if r.calibrates]
    assert {r.published for r in calibrating} == {
        profiles.MLPERF_H100_8[2], profiles.MLPERF_H100_64[2], profiles.MLPERF_A100_64[2]}
    h100 = profiles.HARDWARE["dgx-h100"].compute["resnet50"]
    assert h100.points == ((400, profiles.MLPERF_H100_8[2] / 8),)
