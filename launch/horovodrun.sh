#!/usr/bin/env bash
# Many nodes from a hostfile, through horovodrun (Gloo by default; --controller mpi).
#
#   launch/horovodrun.sh --hostfile hosts.txt -- --preset resnet50-imagenet-32k --data-dir /data/imagenet
#   launch/horovodrun.sh --hostfile hosts.txt --network-interface ib0 --dry-run -- --global-batch-size 32768
#
# hosts.txt: "node1 slots=8" or "node1:8" per line (no count: --gpus-per-node). horovodrun
# reaches the other hosts with ssh (no password; --ssh-port, --ssh-identity) and runs the
# same command there, so lars_hvd and its Python must be installed at the same path on every
# host (--python). --np defaults to every slot. Everything after `--` goes to
# `python -m lars_hvd.train` unchanged: the global batch stays what you wrote.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"
hostfile_plan
HOROVODRUN=$(horovodrun_bin)
cmd=(env "${HOROVOD_ENV[@]}" "$HOROVODRUN" -np "$NP" -H "$HOSTS" "--$CONTROLLER")
[ -z "$IFACE" ] || cmd+=(--network-interface "$IFACE")
[ -z "$SSH_PORT" ] || cmd+=(--ssh-port "$SSH_PORT")
[ -z "$SSH_IDENTITY" ] || cmd+=(--ssh-identity-file "$SSH_IDENTITY")
if [ "$CONTROLLER" = mpi ] && [ "$(id -u)" = 0 ]; then
  cmd+=(--mpi-args="--allow-run-as-root")
fi
run "${cmd[@]}" "${TRAIN[@]}"
