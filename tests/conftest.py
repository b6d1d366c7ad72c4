"""Shared test setup: this folder is on sys.path (for lars_reference), TF is quiet."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
