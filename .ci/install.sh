#!/usr/bin/env bash
# Installs lars_hvd and its whole stack into .venv/ at the repo root; `make install` runs it.
#
#   bash .ci/install.sh                  # the stack for this Python, CPU (tensorflow-cpu)
#   STACK=current bash .ci/install.sh    # TensorFlow 2.21 + tf-keras 2.21 (Keras 2 API)
#   STACK=pinned bash .ci/install.sh     # TensorFlow 2.15.1 (Keras 2.15), Python 3.10-3.11
#   GPU=1 bash .ci/install.sh            # tensorflow[and-cuda], Horovod with NCCL (needs CUDA)
#
# Two stacks, one code base (docs/stacks.md). "pinned" is TensorFlow 2.15.1, whose tf.keras
# is Keras 2.15; it has wheels for Python <= 3.11 only. "current" is TensorFlow 2.21 with
# tf-keras 2.21, the Keras 2 API that TensorFlow ships for code like Horovod's Keras wrapper
# (Keras 3, TF's default since 2.16, silently breaks it); lars_hvd sets TF_USE_LEGACY_KERAS=1.
# STACK=auto (the default) takes pinned on Python 3.10-3.11 and current on 3.12-3.13.
#
# Steps: Debian packages -> .venv -> the TensorFlow stack -> Horovod built from source
# against that TensorFlow (wheel cached outside the repo, per stack) -> lars_hvd (editable)
# -> `horovodrun --check-build` must show TensorFlow, MPI and Gloo. Safe to run again.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
GPU=${GPU:-0}
STACK=${STACK:-auto}
PINNED_TF=2.15.1
CURRENT_TF=2.21.0
HOROVOD_VERSION=0.28.1

say() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# 1. Python and the stack: TensorFlow 2.15 has wheels for CPython 3.9-3.11, 2.21 for
#    3.10-3.13; lars_hvd needs 3.10+.
command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found. Install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv) or set PYTHON=/path/to/python3."
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$STACK:$pyver" in
  auto:3.10|auto:3.11) STACK=pinned ;;
  auto:3.12|auto:3.13) STACK=current ;;
  pinned:3.10|pinned:3.11|current:3.10|current:3.11|current:3.12|current:3.13) ;;
  pinned:3.12|pinned:3.13) die "STACK=pinned needs Python 3.10 or 3.11 (TensorFlow $PINNED_TF has no wheels for Python $pyver). Use STACK=current (TensorFlow $CURRENT_TF + tf-keras), or PYTHON=python3.11." ;;
  auto:*|pinned:*|current:*) die "Python $pyver ($PYTHON) is not supported: lars_hvd needs Python 3.10-3.13 (the TensorFlow wheels it can use). Run again with PYTHON=python3.11 (or 3.12, 3.13)." ;;
  *) die "STACK must be auto, pinned or current (got '$STACK')." ;;
esac
if [ "$STACK" = pinned ]; then TF_VERSION=$PINNED_TF; else TF_VERSION=$CURRENT_TF; fi
if [ -f "$VENV/.lars_hvd-stack" ] && [ "$(cat "$VENV/.lars_hvd-stack")" != "$STACK" ]; then
  die "$VENV holds the $(cat "$VENV/.lars_hvd-stack") stack, not $STACK. Install the $STACK stack into another environment (make install STACK=$STACK uses .venv-$STACK), or remove $VENV first."
fi

# 2. System packages: Open MPI (Horovod's MPI controller and mpi4py), the Fashion-MNIST
#    data set (the offline default), and a C++ toolchain for the Horovod build.
pkgs=(libopenmpi-dev openmpi-bin dataset-fashion-mnist cmake g++ make)
# Debian's own Python needs its venv module and headers (mpi4py and Horovod compile).
case "$(readlink -f "$(command -v "$PYTHON")")" in
  /usr/bin/*) pkgs+=("python${pyver}-venv" "python${pyver}-dev") ;;
esac
need=()
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "Installing Debian packages: ${need[*]}"
  SUDO=
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "Need root (or sudo) to install: ${need[*]}"
    SUDO=sudo
  fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# 3. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  say "Creating $VENV with $PYTHON ($pyver)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=23" "setuptools>=69" wheel

# 4. The TensorFlow stack. Horovod must see TensorFlow at build time, so TF comes first.
extra=cpu
[ "$GPU" = 1 ] && extra=gpu
if [ "$STACK" = pinned ]; then
  # tensorflow-addons imports on this stack only: the test suite checks our LAMB against it.
  say "Installing the pinned stack (.[${extra},test,crosscheck]: TensorFlow $TF_VERSION, mpi4py, pytest, ruff, tensorflow-addons)"
  "${PIP[@]}" install -q -e ".[${extra},test,crosscheck]"
else
  # JAX and PyTorch (.[keras3]): the tests of lars_hvd.keras3 on Keras 3's other backends.
  say "Installing the current stack (.[current-${extra},test,keras3]: TensorFlow $TF_VERSION, tf-keras $TF_VERSION, mpi4py, pytest, ruff, JAX, PyTorch)"
  "${PIP[@]}" install -q -e ".[current-${extra},test,keras3]"
  # tf-keras requires `tensorflow`; beside tensorflow-cpu that would pull in the full CUDA
  # wheel over it. Its only dependency is TensorFlow itself, installed just above.
  "${PIP[@]}" install -q --no-deps "tf-keras==$TF_VERSION"
fi
echo "$STACK" > "$VENV/.lars_hvd-stack"

# 5. Horovod from source, against the TensorFlow just installed; the wheel is cached.
export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITH_MPI=1
export HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
if [ "$GPU" = 1 ]; then
  export HOROVOD_GPU_OPERATIONS=NCCL
else
  unset HOROVOD_GPU_OPERATIONS || true
fi
tf_installed=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("tensorflow-cpu") if "'"$extra"'" == "cpu" else m.version("tensorflow"))')
flags="tf${tf_installed}-hvd${HOROVOD_VERSION}-py${pyver}-$(uname -m)-gpu${GPU}-${HOROVOD_GPU_OPERATIONS:-none}-tf1gloo1mpi1"
CACHE=${LARS_HVD_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lars_hvd/wheels}/$flags
installed_hvd=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("horovod"))' 2>/dev/null || true)
stamp="$VENV/.horovod-build"
if [ "$installed_hvd" = "$HOROVOD_VERSION" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$flags" ]; then
  say "Horovod $HOROVOD_VERSION already built for this stack ($flags)"
else
  wheel=$(ls "$CACHE"/horovod-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    say "Building Horovod $HOROVOD_VERSION against TensorFlow $tf_installed (a few minutes)"
    mkdir -p "$(dirname "$CACHE")"
    tmp=$(mktemp -d "$(dirname "$CACHE")/.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    src=horovod==$HOROVOD_VERSION
    if [ "$STACK" = current ]; then
      # TensorFlow >= 2.19 moved or stopped shipping the headers that horovod/tensorflow/
      # xla_mpi_ops.cc includes (XLA's builder, highwayhash, farmhash, LLVM); that file's body
      # is compiled only for GPU builds, so a CPU build drops it from the build. Upstream's
      # fix is unreleased: https://github.com/horovod/horovod/pull/4302
      "${PIP[@]}" download -q --no-deps --no-binary :all: -d "$tmp" "$src"
      tar -xzf "$tmp/horovod-$HOROVOD_VERSION.tar.gz" -C "$tmp"
      src="$tmp/horovod-$HOROVOD_VERSION"
      lists="$src/horovod/tensorflow/CMakeLists.txt"
      grep -q 'xla_mpi_ops.cc' "$lists" || die "the Horovod patch no longer applies: $lists does not name xla_mpi_ops.cc"
      if [ "$GPU" = 1 ]; then
        say "WARNING: a GPU build without xla_mpi_ops.cc is untested (no XLA Horovod ops)"
      fi
      sed -i '/xla_mpi_ops\.cc/d' "$lists"
      say "Patched Horovod $HOROVOD_VERSION for TensorFlow $TF_VERSION: xla_mpi_ops.cc left out of $lists"
    fi
    MAKEFLAGS="-j$(nproc)" "${PIP[@]}" wheel --no-build-isolation --no-deps --no-cache-dir \
      -w "$tmp" "$src"
    rm -rf "$tmp/horovod-$HOROVOD_VERSION" "$tmp/horovod-$HOROVOD_VERSION.tar.gz"
    # Publish the cache entry atomically: a killed build never leaves a half wheel behind.
    rm -rf "$CACHE"
    mv "$tmp" "$CACHE"
    trap - EXIT
    wheel=$(ls "$CACHE"/horovod-*.whl | head -n1)
  else
    say "Using cached Horovod wheel $wheel"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$wheel"
  echo "$flags" > "$stamp"
fi
# Horovod's runtime requirements (horovodrun's cloudpickle, psutil, pyyaml, packaging).
"${PIP[@]}" install -q cloudpickle psutil pyyaml packaging

# 6. Check the build: every framework and controller we rely on must be there.
say "Checking the Horovod build"
check=$("$VENV/bin/horovodrun" --check-build)
echo "$check"
for part in TensorFlow MPI Gloo; do
  grep -q "\[X\] $part" <<<"$check" || die "Horovod was built without $part. Remove the cached wheel ($CACHE) and $stamp, then run 'make install' again; see the build log above."
done
"$VENV/bin/python" -m lars_hvd.stack
say "lars_hvd installed in $VENV"
