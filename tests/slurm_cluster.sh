#!/usr/bin/env bash
# A real two-node Slurm cluster on one machine, for the Slurm tests: nodes lhvd-s1 and
# lhvd-s2, each a network namespace (10.233.8.1 and .2, eth0, on a bridge that also holds
# 10.233.8.254 for the submitting host) with its own host name; slurmctld and a slurmd on
# lhvd-s1, a slurmd on lhvd-s2; one munged (its own key and socket) serves them all. Slurm
# 22.05 from Debian: slurmctld, slurmd, slurm-client, munge, and libpmix-dev for srun
# --mpi=pmix.
#
#   tests/slurm_cluster.sh check        exit 0 if this machine can run it, else say why, exit 3
#   tests/slurm_cluster.sh up DIR       start it (DIR: slurm.conf, key, state, logs; created);
#                                       then SLURM_CONF=DIR/slurm.conf sbatch/srun/scontrol
#   tests/slurm_cluster.sh down DIR     stop and remove everything (safe to repeat)
#
# Needs root, iproute2, util-linux (nsenter, unshare). A namespace is entered with
# `nsenter --net=... unshare --uts --mount`, not `ip netns exec`, which remounts /sys and so
# hides the cgroup tree slurmd 22.05 needs.

set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=netns_common.sh
source "$HERE/netns_common.sh"

NODES=(lhvd-s1 lhvd-s2)
ADDRS=(10.233.8.1 10.233.8.2)
BRIDGE=lhvd-sbr
HOST_ADDR=10.233.8.254
PACKAGES=(slurmctld slurmd slurm-client munge libpmix-dev)

check() {
  check_netns || return 3
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "not installed: ${missing[*]} (apt-get install ${missing[*]})"
    return 3
  fi
}

in_node() {  # index cmd...: run cmd inside node i, with its host name
  local i="$1"; shift
  # shellcheck disable=SC2016  # $0 and $@ are the inner shell's
  nsenter --net="/run/netns/${NODES[$i]}" unshare --uts --mount \
    sh -c 'hostname "$0" && exec "$@"' "${NODES[$i]}" "$@"
}

write_conf() {  # dir
  local dir="$1" cpus memory
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 4 ))
  cat >"$dir/slurm.conf" <<EOF
ClusterName=lhvd
SlurmctldHost=${NODES[0]}(${ADDRS[0]})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
TmpFS=$dir/tmp/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobRequeue=1
KillWait=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
SchedulerType=sched/backfill
NodeName=${NODES[0]} NodeAddr=${ADDRS[0]} CPUs=$cpus RealMemory=$memory State=UNKNOWN
NodeName=${NODES[1]} NodeAddr=${ADDRS[1]} CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
}

up() {
  local dir="$1" i
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  down "$dir" 2>/dev/null || true
  mkdir -p "$dir/state" "$dir/munge" "$dir/spool" "$dir/tmp"
  for i in 0 1; do mkdir -p "$dir/spool/${NODES[$i]}" "$dir/tmp/${NODES[$i]}"; done
  # The network: a bridge in this namespace, a veth from it into each node.
  ip link add "$BRIDGE" type bridge
  ip addr add "$HOST_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for i in 0 1; do
    ip netns add "${NODES[$i]}"
    ip link add "lhvd-sv$i" type veth peer name "lhvd-sp$i"
    ip link set "lhvd-sv$i" master "$BRIDGE" up
    ip link set "lhvd-sp$i" netns "${NODES[$i]}"
    ip -n "${NODES[$i]}" link set "lhvd-sp$i" name eth0
    ip -n "${NODES[$i]}" addr add "${ADDRS[$i]}/24" dev eth0
    ip -n "${NODES[$i]}" link set eth0 up
    ip -n "${NODES[$i]}" link set lo up
  done
  # Munge: a throwaway key, its own socket (one munged serves every namespace).
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chmod 0400 "$dir/munge/munge.key"
  chmod 0700 "$dir/munge"
  munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed"
  write_conf "$dir"
  export SLURM_CONF="$dir/slurm.conf"
  in_node 0 slurmctld -f "$dir/slurm.conf"
  for i in 0 1; do in_node "$i" slurmd -f "$dir/slurm.conf" -N "${NODES[$i]}"; done
  # Ready when both nodes are idle.
  for _ in $(seq 100); do
    if [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" = 2 ]; then
      return 0
    fi
    sleep 0.2
  done
  echo "the Slurm nodes did not become idle in 20 s; see $dir/*.log" >&2
  sinfo -N >&2 || true
  return 1
}

kill_pidfile() {  # file [signal]
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  kill "-${2:-TERM}" "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}

down() {
  local dir="$1" i
  # slurmds before slurmctld (a slurmd whose controller is gone keeps retrying).
  for i in 1 0; do kill_pidfile "$dir/slurmd-${NODES[$i]}.pid"; done
  kill_pidfile "$dir/slurmctld.pid"
  kill_pidfile "$dir/munge/munged.pid"
  for i in 1 0; do
    kill_namespace_processes "${NODES[$i]}"
    ip link del "lhvd-sv$i" 2>/dev/null || true  # each veth before its namespace
    ip netns del "${NODES[$i]}" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

case "${1-}" in
  check) check ;;
  up) [ $# -eq 2 ] || die "usage: up DIR"; up "$2" ;;
  down) [ $# -eq 2 ] || die "usage: down DIR"; down "$(cd "$2" 2>/dev/null && pwd || echo "$2")" ;;
  *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 2 ;;
esac
