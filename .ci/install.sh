#!/usr/bin/env bash
# Installs lars_hvd and its whole stack into .venv/ at the repo root; `make install` runs it.
#
#   bash .ci/install.sh            # CPU stack (tensorflow-cpu), Horovod with MPI + Gloo
#   GPU=1 bash .ci/install.sh      # tensorflow[and-cuda], Horovod with NCCL (needs CUDA)
#
# Steps: Debian packages -> .venv -> pinned TensorFlow stack -> Horovod built from source
# against that TensorFlow (wheel cached outside the repo) -> lars_hvd (editable) ->
# `horovodrun --check-build` must show TensorFlow, MPI and Gloo. Safe to run again.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
GPU=${GPU:-0}
TF_VERSION=2.15.1
HOROVOD_VERSION=0.28.1

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# 1. Python: TensorFlow 2.15 publishes wheels for CPython 3.9-3.11; lars_hvd needs 3.10+.
command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found. Install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv) or set PYTHON=/path/to/python3.11."
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$pyver" in
  3.10|3.11) ;;
  *) die "Python $pyver ($PYTHON) is not supported: lars_hvd needs Python >= 3.10, and TensorFlow $TF_VERSION (pinned because Horovod's Keras integration needs Keras 2) ships wheels for Python <= 3.11. Run again with PYTHON=python3.11." ;;
esac

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

# 4. The pinned stack. Horovod must see TensorFlow at build time, so TF comes first.
extra=cpu
[ "$GPU" = 1 ] && extra=gpu
say "Installing the pinned stack (.[${extra},test]: TensorFlow $TF_VERSION, tensorflow-addons, mpi4py, pytest, ruff)"
"${PIP[@]}" install -q -e ".[${extra},test]"

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
    MAKEFLAGS="-j$(nproc)" "${PIP[@]}" wheel --no-build-isolation --no-deps --no-cache-dir \
      -w "$tmp" "horovod==$HOROVOD_VERSION"
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
