#!/usr/bin/env bash
# Many nodes from a hostfile, through Open MPI's mpirun (Horovod's MPI controller).
#
#   launch/mpirun.sh --hostfile hosts.txt -- --preset resnet50-imagenet-32k --data-dir /data/imagenet
#   launch/mpirun.sh --hostfile hosts.txt --network-interface ib0 --dry-run -- --global-batch-size 32768
#
# The flags Horovod's documentation gives for Open MPI: -bind-to none -map-by slot (Horovod
# pins threads itself), -mca pml ob1 -mca btl ^openib (TCP/shared memory for MPI's own
# traffic; NCCL carries the gradients on GPUs), and -x for every variable the ranks need.
# --network-interface also restricts MPI's TCP to that NIC. As root, --allow-run-as-root is
# added. Everything after `--` goes to `python -m lars_hvd.train` unchanged.

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_common "$@"
hostfile_plan
cmd=(mpirun -np "$NP" -H "$HOSTS" -bind-to none -map-by slot -mca pml ob1 -mca btl ^openib)
[ "$(id -u)" != 0 ] || cmd+=(--allow-run-as-root)
for kv in "${HOROVOD_ENV[@]}"; do cmd+=(-x "$kv"); done
for name in PATH LD_LIBRARY_PATH PYTHONPATH TF_CPP_MIN_LOG_LEVEL; do  # those that are set
  [ -z "${!name+set}" ] || cmd+=(-x "$name")
done
if [ -n "$IFACE" ]; then
  cmd+=(-mca btl_tcp_if_include "$IFACE" -mca oob_tcp_if_include "$IFACE")
fi
ssh_args=()
[ -z "$SSH_PORT" ] || ssh_args+=(-p "$SSH_PORT")
[ -z "$SSH_IDENTITY" ] || ssh_args+=(-i "$SSH_IDENTITY")
[ ${#ssh_args[@]} -eq 0 ] || cmd+=(-mca plm_rsh_args "${ssh_args[*]}")
run "${cmd[@]}" "${TRAIN[@]}"
