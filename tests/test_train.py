"""The training entry point in-process: a smoke test of main(), resume, refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lars_hvd.data import fashion_mnist
from lars_hvd.errors import UsageError
from lars_hvd.train import main

pytestmark = [pytest.mark.core, pytest.mark.fashion_mnist]

SMALL = ["--train-examples", "2048", "--global-batch-size", "512", "--epochs", "2",
         "--log-every-steps", "1", "--deterministic"]


class StopAfterEpochs(tf.keras.callbacks.Callback):
    """Stops training, as a user's Ctrl-C or a time limit would, after N epochs."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


def checkpoint_values(run_dir: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints"))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if "OPTIMIZER_SLOT" in key or key.startswith(("model/", "optimizer/", "epoch",
                                                            "step"))}


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    scalars: dict[str, list] = {}
    for path in log_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                if array.dtype.kind in "SUO":  # Keras's model config, not a scalar
                    continue
                scalars.setdefault(value.tag, []).append((event.step, float(array)))
    return scalars


def keras_accuracy(run_dir: Path) -> float:
    """Keras's own test accuracy of the run's final checkpoint (an independent count)."""
    from lars_hvd import models

    model = models.build("small_cnn_bn", (28, 28, 1), 10)
    tf.train.Checkpoint(model=model).restore(
        tf.train.latest_checkpoint(str(run_dir / "checkpoints"))).expect_partial()
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x, y = fashion_mnist.load("test")
    return model.evaluate(x, y, batch_size=1000, verbose=0, return_dict=True)["accuracy"]


def test_fashion_mnist_is_decoded_once_per_process_while_its_files_are_unchanged(tmp_path):
    import gzip
    import shutil

    for name in fashion_mnist.FILES["test"]:
        shutil.copy(fashion_mnist.default_dir() / name, tmp_path / name)
    x, y = fashion_mnist.load("test", tmp_path)
    assert fashion_mnist.load("test", tmp_path)[0] is x  # shared, so read-only
    with pytest.raises(ValueError, match="read-only"):
        x[0, 0, 0, 0] = 1.0
    labels = tmp_path / fashion_mnist.FILES["test"][1]
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # the first label, after the 8-byte header
    labels.write_bytes(gzip.compress(bytes(raw)))
    changed = fashion_mnist.load("test", tmp_path)[1]
    assert changed[0] == (y[0] + 1) % 10 and np.array_equal(changed[1:], y[1:])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("a") / "run"
    summary = main([*SMALL, "--run-dir", str(run_dir)])
    return run_dir, summary


def test_main_smoke(uninterrupted):
    run_dir, summary = uninterrupted
    assert summary.global_batch_size == 512 and summary.world_size == 1
    assert summary.epochs_run == 2
    # The summary's accuracy (our exact count over ranks) is what Keras's own evaluate
    # measures for the final checkpoint on the whole test set, and above chance.
    assert summary.test_examples == summary.test_set_examples == 10_000
    assert summary.test_accuracy == pytest.approx(keras_accuracy(run_dir), abs=1e-4)
    assert summary.test_accuracy > 0.15
    rows = list(csv.DictReader(open(run_dir / "log.csv")))
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(summary.test_accuracy)
    for name in ("plan.json", "log.csv", "summary.json", "checkpoints/checkpoint"):
        assert (run_dir / name).is_file(), name
    plan = json.loads((run_dir / "plan.json").read_text())["plan"]
    assert plan["steps_per_epoch"] == 4 and plan["per_worker_batch"] == 512
    assert len((run_dir / "log.csv").read_text().strip().splitlines()) == 3  # header + 2
    assert json.loads((run_dir / "summary.json").read_text())["epochs_run"] == 2


def test_tensorboard_has_lr_and_trust_ratios(uninterrupted):
    run_dir, _ = uninterrupted
    scalars = tensorboard_scalars(run_dir / "tensorboard" / "lars")
    # 4 kernels are adapted by LARS; BN and bias variables are not, so they have no ratio.
    ratios = sorted(tag for tag in scalars if tag.startswith("trust_ratio/"))
    assert ratios == ["trust_ratio/conv1/kernel", "trust_ratio/conv2/kernel",
                      "trust_ratio/fc1/kernel", "trust_ratio/logits/kernel"]
    assert all(0 < v < 1 for tag in ratios for _, v in scalars[tag])
    # Warmup over 1 epoch (4 steps) to the peak LR 10: step s trained at 10 * (s - 1) / 4.
    lr = dict(scalars["learning_rate"])
    assert [lr[s] for s in (1, 2, 3, 4)] == pytest.approx([0.0, 2.5, 5.0, 7.5])
    # The batch's loss and accuracy at the same steps; Keras's own logging is per epoch.
    assert sorted(dict(scalars["batch_loss"])) == sorted(lr)
    assert all(0 < v < 10 for _, v in scalars["batch_loss"])
    assert all(0 <= v <= 1 for _, v in scalars["batch_accuracy"])
    keras_tags = tensorboard_scalars(run_dir / "tensorboard" / "train")
    assert "epoch_loss" in keras_tags and not any(t.startswith("batch_") for t in keras_tags)


def test_resume_continues_from_the_right_step(uninterrupted, tmp_path, capsys):
    a_dir, _ = uninterrupted
    b_dir = tmp_path / "run"
    first = main([*SMALL, "--run-dir", str(b_dir)], extra_callbacks=[StopAfterEpochs(1)])
    assert first.epochs_run == 1
    assert checkpoint_values(b_dir)["step/.ATTRIBUTES/VARIABLE_VALUE"] == 4
    second = main([*SMALL, "--run-dir", str(b_dir), "--resume"])
    assert "epoch 1, step 4" in capsys.readouterr().out
    assert second.epochs_run == 1  # only epoch 2 was left
    a, b = checkpoint_values(a_dir), checkpoint_values(b_dir)
    assert b["step/.ATTRIBUTES/VARIABLE_VALUE"] == 8 and b["epoch/.ATTRIBUTES/VARIABLE_VALUE"] == 2
    assert a.keys() == b.keys() and len(a) > 20
    for key in a:  # model, optimizer slots, iterations: an uninterrupted run's values
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert len((b_dir / "log.csv").read_text().strip().splitlines()) == 3


@pytest.mark.slow
def test_mixed_float16_resumes_with_its_loss_scale(tmp_path, capsys):
    """Stopped after epoch 1 and resumed, a mixed_float16 run with accumulation ends with an
    uninterrupted run's values, the loss-scale optimizer's state included (the MLPerf
    preset's precision, which test_presets_smoke.py does not resume: too slow on a CPU), and
    it trains."""
    # (4 steps an epoch of 128 as 2 x 64: mixed float16 is slow on a CPU)
    fp16 = [*SMALL, "--train-examples", "512", "--global-batch-size", "128", "--precision",
            "mixed_float16", "--max-per-worker-batch", "64", "--eval-examples", "128"]
    try:
        main([*fp16, "--run-dir", str(tmp_path / "a")])
        main([*fp16, "--run-dir", str(tmp_path / "b")], extra_callbacks=[StopAfterEpochs(1)])
        main([*fp16, "--run-dir", str(tmp_path / "b"), "--resume"])
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    out = capsys.readouterr().out
    assert "epoch 1, step 4" in out and "2 accumulation step(s) x 64" in out, out[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "a" / "log.csv")))
    assert len(rows) == 2 and float(rows[-1]["accuracy"]) > 0.3, rows
    a, b = checkpoint_values(tmp_path / "a"), checkpoint_values(tmp_path / "b")
    # (the loss scale counts micro-batches, whose gradients it checks: 8 steps x 2)
    assert b["optimizer/loss_scale/good_steps/.ATTRIBUTES/VARIABLE_VALUE"] == 16
    assert a.keys() == b.keys() and "optimizer/loss_scale/current_loss_scale/.ATTRIBUTES/" \
        "VARIABLE_VALUE" in a
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_existing_run_is_never_overwritten(uninterrupted):
    run_dir, _ = uninterrupted
    before = (run_dir / "plan.json").read_bytes()
    with pytest.raises(UsageError, match="already holds a run; pass --resume"):
        main([*SMALL, "--run-dir", str(run_dir)])
    assert (run_dir / "plan.json").read_bytes() == before


def test_resume_with_other_settings_is_refused(uninterrupted):
    run_dir, _ = uninterrupted
    with pytest.raises(UsageError, match="--learning-rate was 10.0, now 3.0"):
        main([*SMALL, "--run-dir", str(run_dir), "--resume", "--learning-rate", "3"])


def test_resume_without_checkpoint_is_refused(tmp_path):
    with pytest.raises(UsageError, match="holds no checkpoint"):
        main([*SMALL, "--run-dir", str(tmp_path / "empty"), "--resume"])


def test_world_size_flag_is_for_dry_runs_only():
    with pytest.raises(UsageError, match="--world-size plans a --dry-run"):
        main(["--world-size", "8"])


# (mixed float16 with accumulation: test_mixed_float16_resumes_with_its_loss_scale)
@pytest.mark.parametrize("extra", [
    ["--optimizer", "sgd", "--lr-scaling", "linear", "--learning-rate", "0.1"],
    ["--optimizer", "lamb", "--learning-rate", "0.01"],
    ["--precision", "mixed_bfloat16", "--label-smoothing", "0.1", "--decay", "cosine"],
    ["--decay", "step", "--step-boundaries", "1"],
    ["--lars-mode", "clip", "--learning-rate", "0.5"],
], ids=["sgd", "lamb", "bf16-smoothing-cosine", "step", "lars-clip"])
def test_every_optimizer_and_mode_trains(extra, tmp_path):
    try:
        summary = main([*SMALL, "--run-dir", str(tmp_path / "run"),
                        "--bn-recompute-examples", "2048", *extra])
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert summary.epochs_run == 2
    # Training accuracy well above chance (0.1) after 8 steps, and test accuracy too once
    # the BN statistics are recomputed (their moving averages have seen only 8 batches).
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert len(rows) == 2 and float(rows[-1]["accuracy"]) > 0.3, rows
    assert summary.test_accuracy > 0.25, summary


def test_recompute_bn_statistics_averages_training_batches():
    from lars_hvd import distributed
    from lars_hvd.run.evaluation import recompute_bn_statistics

    distributed.init(pin_gpu=False, set_threads=False)
    inputs = tf.keras.Input((3,))
    bn = tf.keras.layers.BatchNormalization(momentum=0.99)
    model = tf.keras.Model(inputs, bn(inputs))
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=[1.0, -2.0, 5.0], scale=[1.0, 2.0, 0.5], size=(64, 3))
               .astype(np.float32) for _ in range(4)]
    data = tf.data.Dataset.from_tensor_slices(
        (np.concatenate(batches), np.zeros(256, np.int32))).batch(64)
    used = recompute_bn_statistics(model, data, examples=150, batch_size=64)
    assert used == 3  # ceil(150 / 64) batches
    np.testing.assert_allclose(bn.moving_mean.numpy(),
                               np.mean([b.mean(0) for b in batches[:3]], axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(),
                               np.mean([b.var(0) for b in batches[:3]], axis=0), rtol=1e-4)
    assert bn.momentum == 0.99  # restored


def test_evaluation_traces_once_per_model_and_sees_its_current_weights():
    import gc
    import weakref

    from lars_hvd import distributed
    from lars_hvd.run import evaluation

    distributed.init(pin_gpu=False, set_threads=False)
    inputs = tf.keras.Input((2,))
    dense = tf.keras.layers.Dense(2, use_bias=False, kernel_initializer="identity")
    model = tf.keras.Model(inputs, dense(inputs))
    x = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0]], np.float32)  # 5: a short last batch
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros(5, np.int32))).batch(2)
    assert evaluation.evaluate(model, data, batch_size=2).accuracy == 0.6  # argmax = x's
    dense.set_weights([np.array([[0, 1], [0, 1]], np.float32)])  # now always class 1
    assert evaluation.evaluate(model, data, batch_size=2).accuracy == 0.0
    counts = evaluation._counts(model)
    assert counts.experimental_get_tracing_count() == 2  # a full and a short batch, once
    gone = weakref.ref(model)
    del model, counts
    gc.collect()
    assert gone() is None  # the cache does not keep an evaluated model alive


def test_elastic_rewrap_for_more_accumulation_continues_the_optimizer():
    """What an elastic reset does when a worker count needs more accumulation: the model,
    re-compiled for 2 micro-batches per step, takes the same step on two halves of a batch
    as an unchanged optimizer takes on the whole batch (same slots, same LR step)."""
    from types import SimpleNamespace

    from lars_hvd import distributed
    from lars_hvd.planning.cli import parse_args
    from lars_hvd.planning.plan import resolve
    from lars_hvd.run.elastic import recompile_for_plan
    from lars_hvd.run.optimizer_factory import build_optimizer_state
    from lars_hvd.run.training import compile_model

    distributed.init(pin_gpu=False, set_threads=False)
    # One optimizer step per epoch; the LR warms up from 0.1 over 3 steps, so the step
    # number matters and step 1 already moves the weights and the momentum.
    flags = ["--train-examples", "64", "--global-batch-size", "64", "--epochs", "4",
             "--warmup-epochs", "3", "--learning-rate", "0.5", "--warmup-start-lr", "0.1"]
    config, _ = parse_args([*flags, "--max-per-worker-batch", "64"])
    one = resolve(config, 1)
    two = resolve(parse_args([*flags, "--max-per-worker-batch", "32"])[0], 1)
    assert (one.accumulation_steps, two.accumulation_steps) == (1, 2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 64, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=(2, 64))

    def model():
        tf.keras.utils.set_random_seed(1)
        m = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(16, activation="relu"),
                                 tf.keras.layers.Dense(10)])  # no BN: halves = whole
        compile_model(m, config, one)
        build_optimizer_state(m.optimizer, m.trainable_variables)
        m.fit(x[0], y[0], batch_size=64, verbose=0)  # step 1
        assert all(np.any(v.numpy()) for v in m.optimizer.variables[1:])  # momentum moved
        return m

    rewrapped, unchanged = model(), model()
    old = rewrapped.optimizer
    elastic = SimpleNamespace(epoch=1, optimizer=old, saves=0)
    elastic.save = lambda: setattr(elastic, "saves", elastic.saves + 1)
    recompile_for_plan(rewrapped, two, elastic, lambda p: compile_model(rewrapped, config, p))
    assert rewrapped.optimizer is not old and elastic.optimizer is rewrapped.optimizer
    assert elastic.saves == 1  # the elastic state now holds the new optimizer's variables
    assert int(rewrapped.optimizer.iterations) == 2  # 1 step x 2 micro-batches

    rewrapped.fit(x[1], y[1], batch_size=32, shuffle=False, verbose=0)  # 2 micro-batches
    unchanged.fit(x[1], y[1], batch_size=64, verbose=0)  # 1 batch
    assert int(rewrapped.optimizer.iterations) == 4
    for a, b in zip(rewrapped.weights, unchanged.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.name)


# Epochs 1-4 of this job evaluate at about 0.15, 0.52, 0.80, 0.84 (BN's moving averages lag).
TARGET_JOB = ["--train-examples", "8192", "--global-batch-size", "512", "--warmup-epochs", "0.5",
              "--epochs", "4", "--deterministic"]


@pytest.mark.slow
def test_target_accuracy_stops_after_the_first_evaluation_that_reaches_it(tmp_path):
    reached = main([*TARGET_JOB, "--target-accuracy", "0.7",
                    "--run-dir", str(tmp_path / "reached")])
    assert reached.target_epoch == 3 and reached.epochs_run == 3
    assert 0 < reached.time_to_target_seconds <= reached.wall_seconds + 1
    assert "| target 0.7 reached at epoch 3 in " in reached.line()
    saved = json.loads((tmp_path / "reached" / "summary.json").read_text())
    assert saved["target_epoch"] == 3 and saved["target_accuracy"] == 0.7
    index = tf.train.get_checkpoint_state(str(tmp_path / "reached" / "checkpoints"))
    assert index.model_checkpoint_path.endswith("epoch-3")  # the epoch that reached it
    # Evaluated every 2 epochs (2 and 4), the same target is seen after epoch 4.
    every_two = main([*TARGET_JOB, "--target-accuracy", "0.7", "--eval-every-epochs", "2",
                      "--run-dir", str(tmp_path / "every2")])
    assert every_two.target_epoch == 4 and every_two.epochs_run == 4
    never = main([*TARGET_JOB, "--epochs", "1", "--target-accuracy", "1",
                  "--run-dir", str(tmp_path / "never")])
    assert never.target_epoch is None and never.time_to_target_seconds is None
    assert never.epochs_run == 1 and never.line().endswith("| target 1 not reached")
