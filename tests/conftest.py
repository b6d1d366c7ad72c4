"""Shared test setup: this folder is on sys.path (for lars_reference), TF is quiet, and
lars_hvd is imported before any test imports TensorFlow (Keras 2 on the current stack)."""

import os

import lars_hvd  # noqa: F401  (first: on the current stack it sets TF_USE_LEGACY_KERAS)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
