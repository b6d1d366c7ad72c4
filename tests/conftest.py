"""Shared test setup: this folder is on sys.path (for lars_reference), TF is quiet, and
lars_hvd is imported before any test imports TensorFlow (Keras 2 on the current stack).

A test marked ``fashion_mnist`` needs Debian's dataset-fashion-mnist: without it the test is
skipped with the reason, and under ``CI`` it fails (CI installs the package, so a skip there
would hide a broken install)."""

import os

import pytest

import lars_hvd  # noqa: F401  (first: on the current stack it sets TF_USE_LEGACY_KERAS)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_runtest_setup(item):
    if item.get_closest_marker("fashion_mnist") is None:
        return
    from lars_hvd.data import fashion_mnist

    if fashion_mnist.default_dir().is_dir():
        return
    why = (f"dataset-fashion-mnist is not installed ({fashion_mnist.default_dir()} is missing; "
           f"make install installs it)")
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but: {why}", pytrace=False)
    pytest.skip(why)
