#!/usr/bin/env bash
# One node, N processes, through horovodrun (Gloo by default).
#
#   launch/local.sh --np 8 -- --preset resnet50-imagenet-32k --data-dir /data/imagenet
#   launch/local.sh --np 2 --dry-run -- --global-batch-size 4096
#
# --np defaults to this node's GPUs (1 without GPUs). OMP_NUM_THREADS is set to cores / N
# (lars_hvd sets TensorFlow's own thread pools the same way). Everything after `--` goes to
# `python -m lars_hvd.train` unchanged. As root with --controller mpi, Open MPI's
# --allow-run-as-root is added.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"
[ ${#EXTRA_ARGS[@]} -eq 0 ] || die "unknown option '${EXTRA_ARGS[0]}' (see --help)"
[ -z "$HOSTFILE" ] || die "--hostfile is for launch/horovodrun.sh or launch/mpirun.sh"
NP="${NP:-$(gpus_here)}"
horovod_env
train_command
HOROVODRUN=$(horovodrun_bin)
threads=$(( $(nproc) / NP )); [ "$threads" -ge 1 ] || threads=1
cmd=(env "${HOROVOD_ENV[@]}" "OMP_NUM_THREADS=$threads"
     "$HOROVODRUN" -np "$NP" -H "localhost:$NP" "--$CONTROLLER")
[ -z "$IFACE" ] || cmd+=(--network-interface "$IFACE")
if [ "$CONTROLLER" = mpi ] && [ "$(id -u)" = 0 ]; then
  cmd+=(--mpi-args="--allow-run-as-root --oversubscribe")
fi
run "${cmd[@]}" "${TRAIN[@]}"
