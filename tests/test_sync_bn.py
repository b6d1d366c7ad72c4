"""Batch norm over groups of workers (``--bn-group``): tests/distributed/sync_bn.py
under ``horovodrun``, every rank checking the invariant."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import run_horovod

pytestmark = pytest.mark.core


def test_without_a_group_the_model_is_the_same_object():
    """--bn-group 1 (no distributed.init(bn_group=...)): today's model and step, bitwise; a
    group that init made no process sets for is refused, not run per worker."""
    import tensorflow as tf

    from lars_hvd import distributed

    model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.BatchNormalization()])
    assert distributed.synchronize_batch_norm(model, 1) is model
    with pytest.raises(RuntimeError, match="groups of 2 asked for, but distributed.init made "
                                           "them for 1"):
        distributed.synchronize_batch_norm(model, 2)


@pytest.mark.multiprocess
@pytest.mark.parametrize("np_, group, controller", [(2, 2, "mpi"), (4, 2, "gloo")])
def test_group_step_equals_one_worker(np_, group, controller):
    result = run_horovod.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no",
         "tests/distributed/sync_bn.py"],
        np_=np_, controller=controller, timeout=300, env={"LARS_HVD_BN_GROUP": str(group)})
    summaries = re.findall(r"(\d+) passed", result.stdout)
    assert result.returncode == 0 and " failed" not in result.stdout, result.stdout[-8000:]
    assert len(summaries) == np_ and all(int(n) == 6 for n in summaries), result.stdout[-8000:]


TRAIN = [sys.executable, "-m", "lars_hvd.train", "--model", "small_cnn_bn",
         "--train-examples", "2048", "--eval-examples", "512", "--global-batch-size", "512",
         "--warmup-epochs", "0.5", "--bn-recompute-examples", "256"]


@pytest.mark.multiprocess
@pytest.mark.fashion_mnist
def test_training_with_a_group_and_hierarchical_allreduce(tmp_path):
    """A run with --bn-group 2 (under MPI) trains, recomputes BN, evaluates, says why Horovod
    keeps its flat allreduce here, its checkpoint loads into a model without a group, and a
    resume with another group is refused (allreduce_note's other branches:
    test_the_hierarchical_allreduce_note_names_what_this_build_does)."""
    run_dir = str(tmp_path / "run")
    result = run_horovod.run([*TRAIN, "--bn-group", "2", "--hierarchical-allreduce",
                              "--epochs", "1", "--run-dir", run_dir],
                             np_=2, controller="mpi", timeout=300)
    out = result.stdout
    assert result.returncode == 0, out[-6000:]
    assert ("batch norm               statistics over 2 workers x 256 = 512 examples a "
            "micro-batch (1 group of consecutive ranks)") in out, out[-4000:]
    assert ("allreduce                hierarchical asked for, but this Horovod has no NCCL (a "
            "CPU build)") in out, out[-4000:]
    assert "final evaluation ended" in out, out[-4000:]  # after the BN recompute
    loads_into_a_plain_model_in_one_process(tmp_path / "run" / "checkpoints")
    # The group is a setting of the run: resumed with another, the run says so in a line.
    result = subprocess.run([*TRAIN, "--bn-group", "1", "--epochs", "2", "--resume",
                             "--run-dir", run_dir], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 2 and "--bn-group was 2, now 1" in result.stderr, (
        result.stdout[-3000:] + result.stderr[-3000:])


def test_the_hierarchical_allreduce_note_names_what_this_build_does(monkeypatch):
    """distributed.allreduce_note's branches, as Horovod 0.28.1's operations.cc decides."""
    from lars_hvd import distributed

    monkeypatch.delenv("HOROVOD_HIERARCHICAL_ALLREDUCE", raising=False)
    assert distributed.allreduce_note() == ""
    monkeypatch.setenv("HOROVOD_HIERARCHICAL_ALLREDUCE", "1")
    hvd = distributed.hvd
    for mpi, nccl, size, local, expected in [
            (False, True, 16, 8, "only under MPI (mpirun, horovodrun --mpi): Gloo keeps"),
            (True, False, 16, 8, "this Horovod has no NCCL (a CPU build)"),
            (True, True, 8, 8, "one node: Horovod keeps its flat allreduce"),
            (True, True, 16, 8, "hierarchical: NCCL inside each node of 8, then across 2 "
                                "nodes")]:
        monkeypatch.setattr(hvd, "mpi_enabled", lambda mpi=mpi: mpi)
        monkeypatch.setattr(hvd, "nccl_built", lambda nccl=nccl: nccl)
        monkeypatch.setattr(hvd, "size", lambda size=size: size)
        monkeypatch.setattr(hvd, "local_size", lambda local=local: local)
        assert expected in distributed.allreduce_note(), (mpi, nccl, size, local)


def loads_into_a_plain_model_in_one_process(checkpoints) -> None:
    """The run's checkpoint restores into the model without a group (Keras's own batch
    norm), in this one process: every variable of it, to the value saved, and it predicts."""
    import numpy as np
    import tensorflow as tf

    from lars_hvd import models
    from lars_hvd.data import fashion_mnist

    model = models.build("small_cnn_bn", (28, 28, 1), 10)
    path = tf.train.latest_checkpoint(str(checkpoints))
    status = tf.train.Checkpoint(model=model).restore(path).expect_partial()
    status.assert_existing_objects_matched()
    saved = tf.train.load_checkpoint(path)
    names = [name for name, _ in tf.train.list_variables(path)
             if name.startswith("model/") and ".OPTIMIZER_SLOT" not in name]
    assert len(names) == len(model.variables), (names, [v.name for v in model.variables])
    moving = [v for v in model.variables if "moving_mean" in v.name]
    assert moving and all(np.any(v.numpy() != 0) for v in moving)  # trained statistics
    for name in names:
        assert np.isfinite(saved.get_tensor(name)).all(), name
    x, _ = fashion_mnist.load("test")
    assert np.isfinite(model.predict(x[:256], verbose=0)).all()
