"""Fail fast, with the fix named, on a stack that lars_hvd cannot work with.

Horovod's Keras integration (``hvd.DistributedOptimizer``) subclasses the Keras 2 optimizer
and averages gradients in ``_compute_gradients``/``get_gradients``. Keras 3 (the default
``tf.keras`` from TensorFlow 2.16 on) has neither hook, so a wrapped optimizer trains with
*un-averaged* gradients and no error. Two stacks give Keras 2 (docs/stacks.md): the pinned
one, TensorFlow 2.15.1 (Keras 2.15), and the current one, TensorFlow 2.21 with tf-keras 2.21
and ``TF_USE_LEGACY_KERAS=1`` (which importing lars_hvd sets). This module checks that the
installed one is whole: Keras 2, tf-keras of TensorFlow's own version, Horovod built with
(and against this) TensorFlow.

``python -m lars_hvd.stack`` prints the versions and exits non-zero on a bad stack.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys

from lars_hvd.errors import UsageError

SUPPORTED_PYTHON = ((3, 10), (3, 13))
PINNED_TF = "2.15.1"
CURRENT_TF = "2.21.0"
INSTALL_HINT = ("Run 'make install' (STACK=pinned: TensorFlow 2.15.1; STACK=current: "
                "TensorFlow 2.21 + tf-keras) to get a supported stack.")


class StackError(UsageError):
    """The installed Python/TensorFlow/Keras/Horovod cannot run lars_hvd correctly."""


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def check_python(version: tuple[int, int] | None = None) -> None:
    """Raises StackError if the Python version is outside what either stack supports."""
    version = version or sys.version_info[:2]
    low, high = SUPPORTED_PYTHON
    if not low <= tuple(version) <= high:
        raise StackError(
            f"Python {version[0]}.{version[1]} is not supported: lars_hvd's stacks have "
            f"TensorFlow wheels for Python {low[0]}.{low[1]}-{high[0]}.{high[1]} (TensorFlow "
            f"{PINNED_TF}: 3.10-3.11; {CURRENT_TF}: 3.10-3.13). Create the environment with "
            f"one of those (make install PYTHON=python3.11)."
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
    """Raises StackError unless ``tf.keras`` is Keras 2, naming why it is not and the fix."""
    if keras_module is None:
        import tensorflow as tf

        keras_module = tf.keras
    version = keras_version(keras_module)
    if version.split(".")[0] == "2":
        return
    why = ("with Keras 3, Horovod's DistributedOptimizer silently never averages gradients")
    legacy = os.environ.get("TF_USE_LEGACY_KERAS")
    if importlib.util.find_spec("tf_keras") is None:
        import tensorflow as tf

        fix = (f"install tf-keras for this TensorFlow: pip install --no-deps "
               f"tf-keras=={tf_minor(tf.__version__)}.* (make install STACK=current does), or "
               f"use the pinned stack (tensorflow-cpu=={PINNED_TF})")
    elif legacy not in (None, "1", "true", "True"):
        fix = (f"tf-keras is installed, but TF_USE_LEGACY_KERAS={legacy} keeps TensorFlow on "
               f"Keras 3: unset it (lars_hvd sets it to 1) or set TF_USE_LEGACY_KERAS=1")
    else:
        fix = ("tf-keras is installed, but TensorFlow was imported before lars_hvd could set "
               "TF_USE_LEGACY_KERAS=1: import lars_hvd first, or export TF_USE_LEGACY_KERAS=1")
    raise StackError(f"tf.keras resolves to Keras {version}, but lars_hvd needs Keras 2: "
                     f"{why}. Fix: {fix}.")


def tf_minor(version: str) -> str:
    """``2.21`` of ``2.21.0``."""
    return ".".join(version.split(".")[:2])


def check_tf_keras(tf_version: str) -> None:
    """Raises StackError if tf-keras is installed for another TensorFlow minor version."""
    try:
        installed = importlib.metadata.version("tf-keras")
    except importlib.metadata.PackageNotFoundError:
        return
    if tf_minor(installed) != tf_minor(tf_version):
        raise StackError(
            f"tf-keras {installed} is installed beside TensorFlow {tf_version}; each tf-keras "
            f"release works with its own TensorFlow minor version only. Fix: pip install "
            f"--no-deps tf-keras=={tf_minor(tf_version)}.* (or make install STACK=current)."
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
    except Exception as err:
        version = getattr(horovod, "__version__", "?")
        # Horovod compares the TensorFlow it was built against with the one it finds (or,
        # without that check, its library does not load).
        built_against = re.search(r"tensorflow installed with version (\S+) but", str(err))
        if built_against or "undefined symbol" in str(err):
            import tensorflow as tf

            raise StackError(
                f"Horovod {version} was built against another TensorFlow "
                f"({built_against.group(1) if built_against else 'its library does not load'})"
                f" than the installed {tf.__version__}. Fix: rebuild it against this "
                f"TensorFlow (make install builds and caches one Horovod wheel per "
                f"TensorFlow version)."
            ) from err
        if isinstance(err, (ImportError, NotImplementedError)):
            raise StackError(
                f"Horovod {version} was built without TensorFlow support ({one_line(err)}). "
                f"Rebuild it with HOROVOD_WITH_TENSORFLOW=1 after TensorFlow is installed: "
                f"remove the cached wheel and run 'make install' again."
            ) from err
        raise
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
        check_tf_keras(tf.__version__)
        check_horovod_tensorflow()
        import horovod
    except StackError as err:
        print(f"lars_hvd: unsupported stack: {err}", file=sys.stderr)
        return 1
    print(
        f"lars_hvd stack OK ({stack_name(tf.__version__)}): Python {sys.version.split()[0]}, "
        f"TensorFlow {tf.__version__}, Keras {keras_version(tf.keras)} "
        f"({tf.keras.__name__.split('.')[0]}), Horovod {horovod.__version__}"
    )
    return 0


def stack_name(tf_version: str) -> str:
    """``pinned``, ``current``, or ``untested`` for another TensorFlow (docs/stacks.md)."""
    names = {tf_minor(PINNED_TF): "pinned", tf_minor(CURRENT_TF): "current"}
    return names.get(tf_minor(tf_version), "untested: neither stack's TensorFlow")


if __name__ == "__main__":
    sys.exit(main())
