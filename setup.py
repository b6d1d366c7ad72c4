"""Packaging for lars_hvd.

TensorFlow is chosen through an extra because the CPU and GPU builds are different
distributions: ``pip install -e .[cpu]`` (the default that ``make install`` uses) or
``pip install -e .[gpu]``. Horovod is built from source *after* TensorFlow by
``make install`` (``.ci/install.sh``), so it is not a pip requirement here: pip would try to
build it in an isolated environment without TensorFlow and get a Horovod without TF ops.

The model definitions live in the top-level ``models/`` folder and install as
``lars_hvd.models`` (``package_dir``), so no top-level package named ``models`` is put on
anyone's ``sys.path``.
"""

from setuptools import setup

TF_VERSION = "2.15.1"

setup(
    name="lars_hvd",
    version="0.1.0",
    description=(
        "LARS (You, Gitman, Ginsburg 2017) for TensorFlow/Keras 2, trained at a fixed "
        "global batch with Horovod"
    ),
    python_requires=">=3.10,<3.12",
    packages=["lars_hvd", "lars_hvd.data", "lars_hvd.bench", "lars_hvd.study", "lars_hvd.models"],
    package_dir={"lars_hvd": "lars_hvd", "lars_hvd.models": "models"},
    install_requires=[
        "numpy<2",
        "mpi4py",
        "matplotlib",
        "pillow",  # make_tfrecords reads and re-encodes source images
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu=={TF_VERSION}", "tensorflow-addons==0.23.0"],
        "gpu": [f"tensorflow[and-cuda]=={TF_VERSION}", "tensorflow-addons==0.23.0"],
        "test": ["pytest>=8", "ruff==0.17.6", "pyyaml"],
    },
)
