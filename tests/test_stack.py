"""The stack checks fail fast, naming the fix."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from lars_hvd import stack

pytestmark = pytest.mark.core


def test_python_outside_both_stacks():
    for version in ((3, 10), (3, 11), (3, 12), (3, 13)):
        stack.check_python(version)
    for version in ((3, 9), (3, 14)):
        with pytest.raises(stack.StackError, match=rf"Python 3\.{version[1]} is not supported"):
            stack.check_python(version)


def test_keras3_is_refused_with_the_fix(monkeypatch):
    fake = types.ModuleType("keras._tf_keras.keras")
    fake.__version__ = "3.3.3"
    monkeypatch.setitem(sys.modules, "tf_keras", None)  # (tf-keras not installed)
    with pytest.raises(stack.StackError, match=r"Keras 3\.3\.3.*never averages.*Fix: install "
                                               r"tf-keras.*--no-deps"):
        stack.check_keras(fake)


def test_tf_keras_of_another_tensorflow_is_refused(monkeypatch):
    monkeypatch.setattr(stack.importlib.metadata, "version", lambda name: "2.20.0")
    with pytest.raises(stack.StackError, match=r"tf-keras 2\.20\.0 .* TensorFlow 2\.21\.0.*"
                                               r"tf-keras==2\.21\.\*"):
        stack.check_tf_keras("2.21.0")
    stack.check_tf_keras("2.20.1")


def test_keras2_from_the_root_package_version(monkeypatch):
    root = types.ModuleType("fake_keras")
    root.__version__ = "2.15.0"
    monkeypatch.setitem(sys.modules, "fake_keras", root)
    fake = types.ModuleType("fake_keras.api._v2.keras")  # as TF 2.15's tf.keras: no version
    assert stack.keras_version(fake) == "2.15.0"
    stack.check_keras(fake)


def test_horovod_without_tensorflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)  # import fails
    with pytest.raises(stack.StackError, match="built without TensorFlow.*HOROVOD_WITH_TENSORFLOW"):
        stack.check_horovod_tensorflow()


@pytest.mark.multiprocess
def test_installed_stack_is_good():
    out = subprocess.run(
        [sys.executable, "-m", "lars_hvd.stack"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    import tensorflow as tf

    if tf.__version__.startswith("2.15."):
        assert "OK (pinned)" in out.stdout and "Keras 2.15" in out.stdout, out.stdout
    else:
        assert "OK (current)" in out.stdout and "Keras 2.21" in out.stdout, out.stdout
        assert "(tf_keras)" in out.stdout, out.stdout
    assert "Horovod 0.28.1" in out.stdout


@pytest.mark.parametrize("tf_keras, preset, expected", [
    (True, None, "1"),  # tf-keras installed: Keras 2 for tf.keras
    (True, "0", "0"),  # the user's own choice is left alone (check_keras names it)
    (False, None, None),  # no tf-keras (the pinned stack): nothing to set
])
@pytest.mark.multiprocess
def test_importing_lars_hvd_sets_tf_use_legacy_keras(tmp_path, tf_keras, preset, expected):
    site = tmp_path / "site"
    site.mkdir()
    # Either an (empty) tf_keras package first on the path, or tf_keras made unimportable.
    if tf_keras:
        (site / "tf_keras").mkdir()
        (site / "tf_keras" / "__init__.py").write_text("")
    else:
        (site / "sitecustomize.py").write_text("import sys\nsys.modules['tf_keras'] = None\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["PYTHONPATH"] = str(site)
    if preset is not None:
        env["TF_USE_LEGACY_KERAS"] = preset
    out = subprocess.run(
        [sys.executable, "-c", "import os, lars_hvd; print(os.environ.get('TF_USE_LEGACY_KERAS'))"],
        capture_output=True, text=True, env=env, timeout=60, check=True)
    assert out.stdout.strip() == str(expected)
