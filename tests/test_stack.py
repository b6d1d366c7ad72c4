"""The stack checks fail fast, naming the fix."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from lars_hvd import stack


def test_python_outside_tf215_support():
    stack.check_python((3, 11))
    with pytest.raises(stack.StackError, match=r"Python 3\.12 is not supported.*python3\.11"):
        stack.check_python((3, 12))


def test_keras3_is_refused_with_the_fix():
    fake = types.ModuleType("keras._tf_keras.keras")
    fake.__version__ = "3.3.3"
    with pytest.raises(stack.StackError, match=r"Keras 3\.3\.3.*never averages.*make install"):
        stack.check_keras(fake)


def test_keras2_from_the_root_package_version():
    fake = types.ModuleType("keras.api._v2.keras")  # tf.keras of TF 2.15 has no __version__
    assert stack.keras_version(fake).startswith("2.")
    stack.check_keras(fake)


def test_horovod_without_tensorflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)  # import fails
    with pytest.raises(stack.StackError, match="built without TensorFlow.*HOROVOD_WITH_TENSORFLOW"):
        stack.check_horovod_tensorflow()


def test_installed_stack_is_good():
    out = subprocess.run(
        [sys.executable, "-m", "lars_hvd.stack"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "TensorFlow 2.15" in out.stdout and "Keras 2.15" in out.stdout
    assert "Horovod 0.28.1" in out.stdout
