"""Packaging for lars_hvd.

TensorFlow is chosen through an extra, one per stack (docs/stacks.md) and build: the pinned
stack ``.[cpu]`` / ``.[gpu]`` (TensorFlow 2.15.1, Python 3.10-3.11) or the current one
``.[current-cpu]`` / ``.[current-gpu]`` (TensorFlow 2.21 with tf-keras, Python 3.10-3.13;
with ``current-cpu`` install ``tf-keras`` with ``--no-deps``, as ``make install`` does, or it
replaces tensorflow-cpu by the full ``tensorflow``). ``crosscheck`` is tensorflow-addons, for
the tests on the pinned stack only; ``keras3`` is JAX and PyTorch, for the tests of
``lars_hvd.keras3`` on the current stack. Horovod is built from source *after* TensorFlow by
``make install`` (``.ci/install.sh``), so it is not a pip requirement here: pip would try to
build it in an isolated environment without TensorFlow and get a Horovod without TF ops.

The model definitions live in the top-level ``models/`` folder and install as
``lars_hvd.models`` (``package_dir``), so no top-level package named ``models`` is put on
anyone's ``sys.path``.
"""

from setuptools import setup

PINNED_TF = "2.15.1"
CURRENT_TF = "2.21.0"

setup(
    name="lars_hvd",
    version="0.1.0",
    description=(
        "LARS (You, Gitman, Ginsburg 2017) for TensorFlow/Keras 2, trained at a fixed "
        "global batch with Horovod"
    ),
    python_requires=">=3.10,<3.14",
    packages=["lars_hvd", "lars_hvd.bench", "lars_hvd.data", "lars_hvd.optim", "lars_hvd.planning",
              "lars_hvd.run", "lars_hvd.study", "lars_hvd.models"],
    package_dir={"lars_hvd": "lars_hvd", "lars_hvd.models": "models"},
    install_requires=[
        "numpy",  # (each TensorFlow bounds it: < 2 for 2.15, >= 1.26 for 2.21)
        "mpi4py",
        "matplotlib",
        "pillow",  # make_tfrecords reads and re-encodes source images
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu=={PINNED_TF}"],
        "gpu": [f"tensorflow[and-cuda]=={PINNED_TF}"],
        # (TensorFlow 2.21 no longer brings TensorBoard, which tf.summary needs)
        "current-cpu": [f"tensorflow-cpu=={CURRENT_TF}", "tensorboard==2.21.0"],  # + tf-keras

        "current-gpu": [f"tensorflow[and-cuda]=={CURRENT_TF}", f"tf-keras=={CURRENT_TF}",
                        "tensorboard==2.21.0"],
        "crosscheck": ["tensorflow-addons==0.23.0"],
        # Keras 3's other backends, for the tests of lars_hvd.keras3 on the current stack
        # (whose TensorFlow brings Keras 3). PyPI's torch for Linux x86_64 is the CUDA build
        # (several GB); the CPU one is on PyTorch's own index (docs/optimizer.md).
        "keras3": ["jax[cpu]==0.10.2", "torch==2.13.0"],
        "test": ["pytest>=8", "pytest-xdist==3.6.1", "ruff==0.17.6", "pyyaml"],
    },
)
