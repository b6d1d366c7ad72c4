"""Every bad input we tried, what happens, and the table in docs/bad-input.md.

Each case runs the real command line (`python -m lars_hvd.train ...`, one process) in a
fresh folder, in the environment the row describes: a broken stack is made for the run (a
Horovod without its TensorFlow extension on PYTHONPATH; a `sitecustomize` that makes
`tf.keras` report Keras 3), a full disk is a small tmpfs (root only). The table is written
from what the runs print and leave on disk, never typed in by hand:

    python tests/bad_inputs.py docs/bad-input.md

`tests/test_bad_input.py` runs the same cases and checks each row's exit code, message and
files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SMALL = ["--train-examples", "1024", "--global-batch-size", "256", "--epochs", "2",
         "--warmup-epochs", "0.5", "--bn-momentum", "0.9"]


@dataclass
class Outcome:
    code: int
    output: str  # stdout + stderr
    written: str  # what is on disk afterwards, in words


@dataclass
class Case:
    name: str  # the bad input, as the table's first column says it
    run: Callable[[Path], Outcome]
    code: int  # the exit code we promise
    message: str  # a regular expression the output must match
    written: str  # a regular expression the description of the disk must match
    needs: Callable[[], str | None] = lambda: None  # why it cannot run here, or None


def train(tmp: Path, *args: str, pythonpath: Path | None = None,
          memory_limit: int | None = None, python: Path | None = None,
          env_extra: dict[str, str] | None = None) -> Outcome:
    """``python -m lars_hvd.train ARGS`` in ``tmp``; ``memory_limit``: an address-space limit
    in bytes (``ulimit -v``), under which TensorFlow reports running out of memory as an
    error instead of the kernel killing the process; ``python``: another environment's."""
    import resource

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath),
                                                          env.get("PYTHONPATH")]))
    limit = None if memory_limit is None else (
        lambda: resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit)))
    result = subprocess.run([str(python or sys.executable), "-m", "lars_hvd.train", *args],
                            capture_output=True, text=True, env=env, cwd=tmp, timeout=300,
                            check=False, preexec_fn=limit)
    return Outcome(result.returncode, result.stdout + result.stderr, describe(tmp))


def describe(tmp: Path) -> str:
    """What a run left in its folder: the run directory's files, checkpoints by epoch."""
    run = tmp / "run"
    if not run.exists():
        return "nothing (no run directory)"
    names = sorted(p.name for p in run.iterdir() if p.name != "tensorboard")
    epochs = sorted({int(m.group(1)) for p in (run / "checkpoints").glob("epoch-*.index")
                     if (m := re.match(r"epoch-(\d+)\.index", p.name))}) \
        if (run / "checkpoints").is_dir() else []
    text = ", ".join(names)
    return f"run/: {text}; checkpoints of epochs {epochs}" if epochs else f"run/: {text}"


def run_dir(tmp: Path) -> list[str]:
    return ["--run-dir", str(tmp / "run")]


# -- data ----------------------------------------------------------------------------------

def shards(tmp: Path, damage: str | None = None) -> Path:
    """Converted Fashion-MNIST shards (300 train, 100 validation), optionally damaged."""
    data = tmp / "data"
    for split, count in (("train", 300), ("validation", 100)):
        make_tfrecords_quietly(data, split, count)
    shard = data / "train-00000-of-00001"
    raw = bytearray(shard.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    return data


def shards_with_label(tmp: Path, label: int) -> Path:
    import tensorflow as tf

    data = shards(tmp)
    shard = data / "train-00000-of-00001"
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
    example = tf.train.Example()
    example.ParseFromString(records[7])
    example.features.feature["image/class/label"].int64_list.value[0] = label
    records[7] = example.SerializeToString()
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for record in records:
            writer.write(record)
    return data


def sized_shards(tmp: Path, side: str) -> Path:
    """Fashion-MNIST shards written with ``make_tfrecords --shorter-side SIDE``."""
    from lars_hvd.data import make_tfrecords

    data = tmp / "data"
    make_tfrecords.main(["default", str(data), "--source", "fashion-mnist", "--shards", "1",
                         "--max-examples", "8", "--shorter-side", side])
    return data


def converter(tmp: Path, *args: str) -> Outcome:
    """``python -m lars_hvd.data.make_tfrecords ARGS`` in ``tmp`` (what it wrote: OUT's)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-m", "lars_hvd.data.make_tfrecords", *args],
                            capture_output=True, text=True, env=env, cwd=tmp, timeout=300,
                            check=False)
    out = tmp / "data"
    written = (f"data/: {', '.join(sorted(p.name for p in out.iterdir())) or 'empty'}"
               if out.exists() else "nothing (no data directory)")
    return Outcome(result.returncode, result.stdout + result.stderr, written)


IMAGENET = ["--dataset", "imagenet", "--model", "small_cnn_bn", "--global-batch-size", "100",
            "--epochs", "2", "--warmup-epochs", "0.5", "--augment", "crop"]


# -- cases -----------------------------------------------------------------------------------

def nan_loss(tmp: Path) -> Outcome:
    # SGD at LR 0.01 for epoch 1 (finite, checkpointed), then a step "decay" by 1e12 that
    # makes epoch 2 overflow.
    return train(tmp, *SMALL[:-4], "--epochs", "3", "--warmup-epochs", "0", "--optimizer",
                 "sgd", "--learning-rate", "0.01", "--decay", "step", "--step-boundaries", "1",
                 "--step-factor", "1e12", *run_dir(tmp))


def damaged_latest_checkpoint(tmp: Path) -> Outcome:
    first = train(tmp, *SMALL, "--epochs", "3", *run_dir(tmp))
    assert first.code == 0, first.output[-2000:]
    data = next((tmp / "run" / "checkpoints").glob("epoch-3.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])  # truncated
    return train(tmp, *SMALL, "--epochs", "3", *run_dir(tmp), "--resume")


def checkpoint_of_another_model(tmp: Path) -> Outcome:
    import shutil

    other = tmp / "other"
    other.mkdir()
    for folder, model in ((tmp, "small_cnn"), (other, "small_cnn_bn")):
        outcome = train(folder, *SMALL, "--epochs", "1", "--warmup-epochs", "0.5",
                        "--model", model, *run_dir(folder))
        assert outcome.code == 0, outcome.output[-2000:]
    shutil.rmtree(tmp / "run" / "checkpoints")
    shutil.copytree(other / "run" / "checkpoints", tmp / "run" / "checkpoints")
    shutil.rmtree(other)
    return train(tmp, *SMALL, "--epochs", "1", "--warmup-epochs", "0.5", "--model",
                 "small_cnn", *run_dir(tmp), "--resume")


def existing_run(tmp: Path) -> Outcome:
    (tmp / "run").mkdir()
    (tmp / "run" / "notes.txt").write_text("mine")
    return train(tmp, *SMALL, *run_dir(tmp))


def resume_with_other_settings(tmp: Path) -> Outcome:
    first = train(tmp, *SMALL, "--epochs", "1", "--warmup-epochs", "0.5", *run_dir(tmp))
    assert first.code == 0, first.output[-2000:]
    return train(tmp, *SMALL, "--epochs", "1", "--warmup-epochs", "0.5", *run_dir(tmp),
                 "--resume", "--learning-rate", "3")


KERAS3_SITECUSTOMIZE = """
import importlib.abc, importlib.machinery, sys

class _ReportKeras3(importlib.abc.MetaPathFinder):
    # `tf.keras` (TF 2.15: the module keras.api._v2.keras) reports Keras 3.3.3, what it is
    # under TensorFlow >= 2.16 without tf-keras.
    def find_spec(self, name, path=None, target=None):
        if name != "keras.api._v2.keras":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module
        def exec_module(module):
            load(module)
            module.__version__ = "3.3.3"
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _ReportKeras3())
"""


def keras3(tmp: Path) -> Outcome:
    site = tmp / "keras3-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(KERAS3_SITECUSTOMIZE)
    return train(tmp, *SMALL, *run_dir(tmp), pythonpath=site)


def horovod_without_tf(tmp: Path) -> Outcome:
    """A copy of the installed Horovod without its TensorFlow extension (what a build
    without HOROVOD_WITH_TENSORFLOW gives), first on PYTHONPATH."""
    import horovod

    site = tmp / "horovod-site"
    shutil.copytree(Path(horovod.__file__).parent, site / "horovod",
                    ignore=shutil.ignore_patterns("mpi_lib*.so", "__pycache__"))
    return train(tmp, *SMALL, *run_dir(tmp), pythonpath=site)


# The current stack's environment (make install STACK=current), for the rows of its broken
# combinations; the suite itself runs on the pinned stack.
CURRENT_PYTHON = Path(__file__).resolve().parent.parent / ".venv-current" / "bin" / "python"


def needs_current() -> str | None:
    if not CURRENT_PYTHON.exists():
        return f"the current stack is not installed ({CURRENT_PYTHON}: make install STACK=current)"
    return None


def current_without_tf_keras(tmp: Path) -> Outcome:
    """The current stack as if tf-keras were not installed: a `sitecustomize` makes
    ``import tf_keras`` fail (and find_spec find nothing), so TensorFlow 2.21 gives Keras 3."""
    site = tmp / "no-tf-keras-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['tf_keras'] = None\n")
    return train(tmp, *SMALL, *run_dir(tmp), pythonpath=site, python=CURRENT_PYTHON)


def current_with_tf_keras_of_another_tf(tmp: Path) -> Outcome:
    """The current stack with the package metadata of tf-keras 2.20.0 first on PYTHONPATH
    (what ``pip install tf-keras`` of another release leaves)."""
    info = tmp / "site" / "tf_keras-2.20.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tf-keras\nVersion: 2.20.0\n")
    return train(tmp, *SMALL, *run_dir(tmp), pythonpath=info.parent, python=CURRENT_PYTHON)


def horovod_of_another_tf(tmp: Path) -> Outcome:
    """The pinned stack's Horovod (built against TensorFlow 2.15.1, this environment's)
    first on the current stack's PYTHONPATH."""
    import horovod

    site = tmp / "horovod-site"
    shutil.copytree(Path(horovod.__file__).parent, site / "horovod",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return train(tmp, *SMALL, *run_dir(tmp), pythonpath=site, python=CURRENT_PYTHON)


def eval_out_of_memory(tmp: Path) -> Outcome:
    """AlexNet-BN at 227 px trains one step at batch 2, then evaluates 8,192 images at once
    (5.1 GB for the batch alone, in float32) under a 7.5 GB address-space limit: the batch's
    single large allocation fails, with room left for everything else. (ResNet-50 fails
    alike, at 1.4x the CPU of this test: its trace.)"""
    data = tmp / "data"
    for split, count in (("train", 2), ("validation", 8192)):
        make_tfrecords_quietly(data, split, count)
    return train(tmp, "--dataset", "imagenet", "--data-dir", str(data), "--model", "alexnet_bn",
                 "--global-batch-size", "2", "--epochs", "1", "--warmup-epochs", "0",
                 "--eval-batch-size", "8192", *run_dir(tmp), memory_limit=15 * 2**29)


def make_tfrecords_quietly(data: Path, split: str, count: int) -> None:
    from lars_hvd.data import make_tfrecords

    make_tfrecords.main(["default", str(data), "--source", "fashion-mnist", "--split", split,
                         "--shards", "1", "--max-examples", str(count)])


def file_as_folder(flag: str) -> Callable[[Path], Outcome]:
    def run(tmp: Path) -> Outcome:
        (tmp / "notes.txt").write_text("mine")
        return train(tmp, *SMALL, *run_dir(tmp), flag, str(tmp / "notes.txt"))
    return run


def can_mount() -> str | None:
    """Why the full-disk case cannot run here (it mounts a tmpfs), or None."""
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs"
    if shutil.which("mount") is None:
        return "no mount command"
    return None


def disk_full(tmp: Path, then_resume: bool = False) -> Outcome:
    """Training on a 2.6 MB tmpfs: the checkpoints of epochs 1 and 2 fit, epoch 3's does
    not. With ``then_resume``, the tmpfs is then enlarged and the run resumed."""
    run = tmp / "run"
    run.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2600k", "tmpfs", str(run)], check=True)
    try:
        args = [*SMALL[:-4], "--epochs", "4", "--warmup-epochs", "1", *run_dir(tmp)]
        outcome = train(tmp, *args)
        if then_resume and outcome.code == 2:
            subprocess.run(["mount", "-o", "remount,size=20m", str(run)], check=True)
            outcome = train(tmp, *args, "--resume")
        partial = sorted(p.name for p in (run / "checkpoints").glob("*_temp*")) \
            if (run / "checkpoints").is_dir() else []
        outcome.written += f"; temporary files {partial}"
        return outcome
    finally:
        subprocess.run(["umount", str(run)], check=False)


CASES = [
    Case("an unknown flag (`--no-such-flag`)",
         lambda t: train(t, "--no-such-flag"), 2,
         r"unrecognized arguments: --no-such-flag", r"^nothing"),
    Case("a flag value of the wrong type (`--epochs three`)",
         lambda t: train(t, "--epochs", "three"), 2,
         r"argument --epochs: invalid int value: 'three'", r"^nothing"),
    Case("a value not offered (`--optimizer adam`)",
         lambda t: train(t, "--optimizer", "adam"), 2,
         r"argument --optimizer: invalid choice: 'adam'", r"^nothing"),
    Case("a global batch that cannot be split (1000 over 3 workers)",
         lambda t: train(t, "--global-batch-size", "1000", "--dry-run", "--world-size", "3"),
         2, r"1000 cannot be split over 3 workers; the nearest valid sizes are 999 and 1002",
         r"^nothing"),
    Case("a batch-norm group that does not divide the world (`--bn-group 3`, 4 workers)",
         lambda t: train(t, "--bn-group", "3", "--dry-run", "--world-size", "4"), 2,
         r"--bn-group 3 does not divide the world size 4: batch norm needs equal groups of "
         r"workers; choose one of 1, 2, 4", r"^nothing"),
    Case("a batch-norm group above the world (`--bn-group 8`, 4 workers)",
         lambda t: train(t, "--bn-group", "8", "--dry-run", "--world-size", "4"), 2,
         r"--bn-group 8 exceeds the world size 4", r"^nothing"),
    Case("a batch-norm group with `--elastic`",
         lambda t: train(t, "--bn-group", "2", "--elastic", *run_dir(t)), 2,
         r"--bn-group 2 needs a fixed world .* and --elastic changes it", r"^nothing"),
    Case("a learning rate <= 0 (`--learning-rate 0`)",
         lambda t: train(t, "--learning-rate", "0", *run_dir(t)), 2,
         r"--learning-rate must be > 0 \(got 0\.0\)", r"^nothing"),
    Case("a batch <= 0 (`--global-batch-size 0`)",
         lambda t: train(t, "--global-batch-size", "0", *run_dir(t)), 2,
         r"--global-batch-size must be > 0 \(got 0\)", r"^nothing"),
    Case("a global batch larger than the data set",
         lambda t: train(t, "--train-examples", "100", "--global-batch-size", "512",
                         *run_dir(t)), 2,
         r"larger than the 100 training examples", r"^nothing"),
    Case("a missing data directory (Fashion-MNIST)",
         lambda t: train(t, "--data-dir", str(t / "nowhere"), *SMALL, *run_dir(t)), 2,
         r"Fashion-MNIST files not found: .*nowhere", r"^nothing"),
    Case("an empty data directory (`--dataset imagenet`)",
         lambda t: (t / "empty").mkdir() or train(t, *IMAGENET, "--data-dir",
                                                  str(t / "empty"), *run_dir(t)), 2,
         r"no train shards in .*empty: expected files named train-00000-of-NNNNN",
         r"^nothing"),
    Case("a corrupt TFRecord shard (a flipped byte), default `--bad-records skip`",
         lambda t: train(t, *IMAGENET, "--data-dir", str(shards(t, "flip")), *run_dir(t)), 0,
         r"(?s)(?=.*skipped bad data: \S*train-00000-of-00001: corrupt or truncated shard, "
         r"only \d+ of its \d+ bytes are readable records)(?=.*bad records skipped: [1-9])",
         r"checkpoints of epochs \[1, 2\]"),
    Case("a corrupt TFRecord shard, `--bad-records error`",
         lambda t: train(t, *IMAGENET, "--data-dir", str(shards(t, "flip")), "--bad-records",
                         "error", *run_dir(t)), 2,
         r"lars_hvd.train: error: [\s\S]*bad data:[\s\S]*train-00000-of-00001: corrupt or "
         r"truncated shard, .*skips and counts such records\)$", r"^run/: plan.json$"),
    Case("shards pre-sized below the model's crops (`make_tfrecords --shorter-side 128`, "
         "then `--model resnet50`, 224 px)",
         lambda t: train(t, "--dataset", "imagenet", "--data-dir", str(sized_shards(t, "128")),
                         "--model", "resnet50", "--global-batch-size", "8", "--epochs", "1",
                         "--warmup-epochs", "0",
                         *run_dir(t)), 2,
         r"stores train images pre-sized to a shorter side of 128 px \(dataset.json\), less "
         r"than the 256 px that a 224-pixel model's crops are taken from; rewrite them with "
         r"`python -m lars_hvd.data.make_tfrecords SRC \S+ --split train --shorter-side 256 "
         r"--overwrite`", r"^nothing"),
    Case("`make_tfrecords --shorter-side 0` (or negative)",
         lambda t: converter(t, "default", "data", "--source", "fashion-mnist", "--shards", "1",
                             "--max-examples", "8", "--shorter-side", "0"), 2,
         r"make_tfrecords: error: --shorter-side must be a positive number of pixels \(got 0\)",
         r"^nothing"),
    Case("a label out of range (0 where labels are 1..10)",
         lambda t: train(t, *IMAGENET, "--data-dir", str(shards_with_label(t, 0)),
                         *run_dir(t)), 2,
         r"error: label 0 out of range: image/class/label must be within 1..10 .* in "
         r"\S*train-00000-of-00001 record 7; fix --label-offset or --num-classes, or the "
         r"shard$",
         r"^run/: plan.json$"),
    Case("a loss that becomes NaN (SGD whose LR jumps to 1e10 in epoch 2)", nan_loss, 2,
         r"training stopped: the loss became nan in epoch 2\. Nothing of that epoch was saved",
         r"checkpoints of epochs \[1\]$"),
    Case("a run directory that already holds a run, without `--resume`", existing_run, 2,
         r"already holds a run; pass --resume", r"run/: notes.txt$"),
    Case("`--resume` with other settings (`--learning-rate 3`)", resume_with_other_settings, 2,
         r"trained with other settings: --learning-rate was 10.0, now 3.0",
         r"checkpoints of epochs \[1\]$"),
    Case("`--resume` into a checkpoint of another model", checkpoint_of_another_model, 2,
         r"no checkpoint in .* can be restored into this model", r"checkpoints of epochs \[1\]"),
    Case("`--resume` when the latest checkpoint is damaged (truncated)",
         damaged_latest_checkpoint, 0,
         r"(?s)(?=.*WARNING: checkpoint \S*epoch-3 cannot be restored)(?=.*resumed from "
         r"\S*epoch-2: epoch 2)",
         r"checkpoints of epochs \[1, 2, 3\]"),
    # The broken stacks: the check runs as `python -m lars_hvd.train` starts Horovod.
    *(Case(name, run, 2, rf"^lars_hvd.train: error: {message}", r"^nothing") for name, run,
      message in [
          ("a Keras 3 environment (`tf.keras` is Keras 3.3.3, as under TF >= 2.16)", keras3,
           r"tf.keras resolves to Keras 3\.3\.3[^\n]*never averages"),
          ("Horovod built without TensorFlow", horovod_without_tf,
           r"Horovod \S+ was built without TensorFlow[^\n]*HOROVOD_WITH_TENSORFLOW")]),
    # The current stack's wrong combinations (TensorFlow 2.21 + tf-keras 2.21).
    *(Case(name, run, 2, rf"^lars_hvd.train: error: {message}", r"^nothing",
           needs=needs_current) for name, run, message in [
          ("the current stack without tf-keras (TensorFlow 2.21's tf.keras is then Keras 3)",
           current_without_tf_keras,
           r"tf.keras resolves to Keras 3\.[^\n]*Fix: install tf-keras for this TensorFlow: "
           r"pip install --no-deps tf-keras==2\.21\.\*"),
          ("`TF_USE_LEGACY_KERAS=0` on the current stack",
           lambda t: train(t, *SMALL, *run_dir(t), python=CURRENT_PYTHON,
                           env_extra={"TF_USE_LEGACY_KERAS": "0"}),
           r"tf.keras resolves to Keras 3\.[^\n]*TF_USE_LEGACY_KERAS=0 keeps TensorFlow on "
           r"Keras 3: unset it"),
          ("tf-keras of another TensorFlow (its metadata says 2.20.0) beside TensorFlow 2.21",
           current_with_tf_keras_of_another_tf,
           r"tf-keras 2\.20\.0 is installed beside TensorFlow 2\.21\.0[^\n]*--no-deps "
           r"tf-keras==2\.21\.\*"),
          ("Horovod built against another TensorFlow (the pinned stack's, on the current one)",
           horovod_of_another_tf,
           r"Horovod 0\.28\.1 was built against another TensorFlow \(2\.15\.1\) than the "
           r"installed 2\.21\.0\. Fix: rebuild it")]),
    Case("a file where a folder is expected (`--run-dir notes.txt`)",
         file_as_folder("--run-dir"), 2,
         r"^lars_hvd.train: error: invalid configuration: --run-dir \S*notes.txt is a file, "
         r"not a folder", r"^nothing"),
    Case("a file where a folder is expected (`--data-dir notes.txt`)",
         file_as_folder("--data-dir"), 2,
         r"^lars_hvd.train: error: invalid configuration: --data-dir \S*notes.txt is a file",
         r"^nothing"),
    Case("a folder where a file is expected (`--plot-lr .`)",
         lambda t: train(t, "--plot-lr", str(t)), 2,
         r"^lars_hvd.train: error: --plot-lr \S+ is a folder; name a file inside it",
         r"^nothing"),
    Case("a hardware profile that does not exist (`--dry-run --hardware dgx9`)",
         lambda t: train(t, "--dry-run", "--hardware", "dgx9"), 2,
         r"^lars_hvd.train: error: unknown --hardware 'dgx9'; choose one of dgx1-p100, ",
         r"^nothing"),
    Case("a projection for a model no profile has numbers for (`--dry-run --hardware "
         "dgx-a100` of the default small CNN)",
         lambda t: train(t, "--dry-run", "--hardware", "dgx-a100"), 2,
         r"^lars_hvd.train: error: no published small_cnn_bn throughput for dgx-a100",
         r"^nothing"),
    Case("SHARP on a fabric without it (`--dry-run --preset resnet50-imagenet-32k --hardware "
         "dgx1-v100 --sharp`)",
         lambda t: train(t, "--dry-run", "--preset", "resnet50-imagenet-32k", "--hardware",
                         "dgx1-v100", "--sharp"), 2,
         r"^lars_hvd.train: error: --sharp: dgx1-v100's fabric has no in-network reduction "
         r"that NCCL's CollNet uses \(profiles with one: dgx-a100, dgx-h100\); drop --sharp",
         r"^nothing"),
    Case("a target accuracy given in percent (`--target-accuracy 90`)",
         lambda t: train(t, *SMALL, "--target-accuracy", "90", *run_dir(t)), 2,
         r"^lars_hvd.train: error: invalid configuration: --target-accuracy must be in "
         r"\(0, 1\] \(got 90\.0\): a fraction, 0\.9 for 90%", r"^nothing"),
    Case("RMSprop warm-up with LARS (`--rmsprop-warmup-epochs 2`, default `--optimizer lars`)",
         lambda t: train(t, *SMALL, "--rmsprop-warmup-epochs", "2", *run_dir(t)), 2,
         r"^lars_hvd.train: error: invalid configuration: --rmsprop-warmup-epochs is a setting "
         r"of --optimizer sgd, not of --optimizer lars: drop it or pass --optimizer sgd",
         r"^nothing"),
    *(Case(f"a batch schedule {what} (`--batch-schedule {schedule}`)",
           lambda t, schedule=schedule: train(t, "--dry-run", "--world-size", "3",
                                              "--epochs", "10", "--global-batch-size", "3072",
                                              "--batch-schedule", schedule), 2,
           rf"^lars_hvd.train: error: --batch-schedule{message}", r"^nothing")
      for what, schedule, message in [
          ("with epochs out of order", "6:6144,4:12288",
           r": the epochs must increase, but 4 follows 6"),
          ("with an epoch repeated", "4:6144,4:12288",
           r": the epochs must increase, but 4 follows 4"),
          ("past `--epochs`", "12:6144", r": epoch 12 is past --epochs 10"),
          ("that the workers cannot split (3 workers)", "4:6001",
           r", from epoch 4: batch 6001 cannot be split over 3 workers; the nearest valid "
           r"sizes are 6000 and 6003"),
          ("that shrinks the batch", "4:1536",
           r": the batch must grow, but from epoch 4 it would be 1536, after 3072")]),
    Case("RMSprop warm-up with a batch schedule (`--optimizer sgd --rmsprop-warmup-epochs 1 "
         "--batch-schedule 2:512`)",
         lambda t: train(t, *SMALL, "--optimizer", "sgd", "--rmsprop-warmup-epochs", "1",
                         "--batch-schedule", "2:512", *run_dir(t)), 2,
         r"^lars_hvd.train: error: invalid configuration: --rmsprop-warmup-epochs counts "
         r"micro-batches of one accumulation, and a --batch-schedule changes it",
         r"^nothing"),
    Case("a float flag that is not finite (`--learning-rate inf`)",
         lambda t: train(t, *SMALL, "--learning-rate", "inf", *run_dir(t)), 2,
         r"^lars_hvd.train: error: invalid configuration: --learning-rate must be a finite "
         r"number \(got inf\)", r"^nothing"),
    Case("a float flag that is not a number (`--weight-decay nan`)",
         lambda t: train(t, *SMALL, "--weight-decay", "nan", *run_dir(t)), 2,
         r"--weight-decay must be a finite number \(got nan\)", r"^nothing"),
    Case("an evaluation batch too large for memory (`--eval-batch-size 8192`, AlexNet-BN, "
         "a 7.5 GB limit)", eval_out_of_memory, 2,
         r"^lars_hvd.train: error: evaluation ran out of memory at --eval-batch-size 8192 per "
         r"worker \([^)]*\); lower --eval-batch-size", r"checkpoints of epochs \[1\]$"),
    Case("a disk that fills while a checkpoint is written (root: a 2.6 MB tmpfs)",
         disk_full, 2,
         r"^lars_hvd.train: error: no space left on the device of \S*run/checkpoints while "
         r"writing the checkpoint of epoch 3; free space there \(or choose another folder\), "
         r"then continue with --resume",
         r"checkpoints of epochs \[1, 2\]; temporary files \[\]$", needs=can_mount),
]


def shown(text: str, tmp: str) -> str:
    """The lines of the output that tell the user what happened (each once), with the
    throwaway folder's path written as <tmp>."""
    keep = []
    for line in (ln.strip() for ln in text.replace(tmp, "<tmp>").splitlines()):
        if re.search(r"(^|: )error: |^WARNING: |^lars_hvd: skipped|^bad records skipped|"
                     r"^resumed from", line) \
                and line not in keep:
            keep.append(line)
    return " / ".join(keep[:3]).replace("|", "\\|")


def write_table(path: Path) -> None:
    import tempfile

    rows = ["| bad input | exit code | what it prints | what is on disk afterwards |",
            "|---|---|---|---|"]
    for case in CASES:
        if case.needs():
            raise SystemExit(f"cannot run {case.name!r} here: {case.needs()}")
        with tempfile.TemporaryDirectory() as tmp:
            outcome = case.run(Path(tmp))
            printed = shown(outcome.output, tmp)
        print(f"{outcome.code}  {case.name}", flush=True)
        rows.append(f"| {case.name} | {outcome.code} | {printed} | {outcome.written} |")
    header = ("# Bad input: what lars_hvd does\n\n"
              "Written by `python tests/bad_inputs.py docs/bad-input.md` from real runs of "
              "`python -m lars_hvd.train` (one process, each in a fresh folder; `run/` is its "
              "`--run-dir`), each in the environment its row describes (a broken stack made "
              "for the run, a full disk made of a small tmpfs); `<tmp>` is that fresh folder. "
              "`tests/test_bad_input.py` checks every row.\n\n")
    from lars_hvd.files import atomic_write_text

    atomic_write_text(path, header + "\n".join(rows) + "\n")


if __name__ == "__main__":
    write_table(Path(sys.argv[1]))
