"""Fail fast, with the fix named, on a stack that lars_hvd cannot work with.

Horovod's Keras integration (``hvd.DistributedOptimizer``) subclasses the Keras 2 optimizer
and averages gradients in ``_compute_gradients``/``get_gradients``. Keras 3 (the default
``tf.keras`` from TensorFlow 2.16 on) has neither hook, so a wrapped optimizer trains with
*un-averaged* gradients and no error. tensorflow-addons does not import on TF >= 2.16 either.
So the stack is pinned to TensorFlow 2.15 / Keras 2.15, and this module checks it.

``python -m lars_hvd.stack`` prints the versions and exits non-zero on a bad stack.
"""

from __future__ import annotations

import importlib
import sys

from lars_hvd.errors import UsageError

SUPPORTED_PYTHON = ((3, 10), (3, 11))
PINNED_TF = "2.15.1"
INSTALL_HINT = "Run 'make install' (or: pip install -e .[cpu] / .[gpu]) to get the pinned stack."


class StackError(UsageError):
    """The installed Python/TensorFlow/Keras/Horovod cannot run lars_hvd correctly."""


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def check_python(version: tuple[int, int] | None = None) -> None:
    """Raises StackError if the Python version is outside what TensorFlow 2.15 supports."""
    version = version or sys.version_info[:2]
    low, high = SUPPORTED_PYTHON
    if not low <= tuple(version) <= high:
        raise StackError(
            f"Python {version[0]}.{version[1]} is not supported: TensorFlow {PINNED_TF} "
            f"(pinned because Horovod's Keras integration requires Keras 2) ships wheels for "
            f"Python {low[0]}.{low[1]}-{high[0]}.{high[1]}. Create the environment with "
            f"python3.11 (make install PYTHON=python3.11)."
        )


def keras_version(keras_module) -> str:
    """The version of the Keras package that ``keras_module`` (``tf.keras``) comes from.

    ``tf.keras`` has no ``__version__`` in TF 2.15 (it is ``keras.api._v2.keras``); its root
    package (``keras``, or ``tf_keras`` with TF_USE_LEGACY_KERAS=1) has.
    """
    version = getattr(keras_module, "__version__", None)
    if version is None:
        root = keras_module.__name__.split(".")[0]
        version = getattr(importlib.import_module(root), "__version__", "0")
    return str(version)


def check_keras(keras_module=None) -> None:
    """Raises StackError unless ``tf.keras`` is Keras 2."""
    if keras_module is None:
        import tensorflow as tf

        keras_module = tf.keras
    version = keras_version(keras_module)
    if version.split(".")[0] != "2":
        raise StackError(
            f"tf.keras resolves to Keras {version}, but "
            f"lars_hvd needs Keras 2: with Keras 3, Horovod's DistributedOptimizer silently "
            f"never averages gradients. Install tensorflow-cpu=={PINNED_TF} (Keras 2.15), "
            f"or on TF >= 2.16 install tf_keras and set TF_USE_LEGACY_KERAS=1. {INSTALL_HINT}"
        )


def check_horovod_tensorflow() -> None:
    """Raises StackError unless Horovod is importable and was built with TensorFlow."""
    try:
        import horovod
    except ImportError as err:
        raise StackError(
            f"Horovod is not installed ({one_line(err)}). It must be built from source after "
            f"TensorFlow: {INSTALL_HINT}"
        ) from err
    try:
        import horovod.tensorflow as hvd_tf

        built = hvd_tf.tensorflow_built() if hasattr(hvd_tf, "tensorflow_built") else True
    except (ImportError, NotImplementedError) as err:
        raise StackError(
            f"Horovod {getattr(horovod, '__version__', '?')} was built without TensorFlow "
            f"support ({one_line(err)}). Rebuild it with HOROVOD_WITH_TENSORFLOW=1 after "
            f"TensorFlow is installed: remove the cached wheel and run 'make install' again."
        ) from err
    if not built:
        raise StackError(
            "Horovod reports it was built without TensorFlow. Rebuild it with "
            "HOROVOD_WITH_TENSORFLOW=1 (make install)."
        )


def main() -> int:
    try:
        check_python()
        import tensorflow as tf

        check_keras(tf.keras)
        check_horovod_tensorflow()
        import horovod
    except StackError as err:
        print(f"lars_hvd: unsupported stack: {err}", file=sys.stderr)
        return 1
    print(
        f"lars_hvd stack OK: Python {sys.version.split()[0]}, TensorFlow {tf.__version__}, "
        f"Keras {keras_version(tf.keras)}, Horovod {horovod.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
