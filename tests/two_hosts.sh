#!/usr/bin/env bash
# Two real hosts on one machine, for the multi-host tests: network namespaces lhvd-a and
# lhvd-b joined by a veth pair (10.233.7.1 and 10.233.7.2 on an interface named eth0 in
# both, as horovodrun wants one interface name on every host), each with its own host name
# (a UTS namespace) and its own sshd, a throwaway ssh key, and /etc/netns/<ns>/hosts
# naming both hosts.
#
#   tests/two_hosts.sh check          exit 0 if this machine can make them, else say why, exit 3
#   tests/two_hosts.sh up DIR         make them (DIR: keys, configs, logs; created)
#   tests/two_hosts.sh run a|b DIR CMD [ARG...]
#                                     run CMD on host a or b, with an `ssh` first in PATH
#                                     that uses DIR's key and never writes known_hosts
#   tests/two_hosts.sh down DIR       remove everything (safe to repeat, or after a failed up)
#
# Needs root, iproute2, util-linux's unshare and openssh-server. It leaves /run/sshd (sshd's
# privilege-separation directory) in place if it had to create it.

set -euo pipefail

# shellcheck source=netns_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/netns_common.sh"

NETNS=(lhvd-a lhvd-b)
ADDRS=(10.233.7.1 10.233.7.2)

check() {
  check_netns || return 3
  [ -x /usr/sbin/sshd ] || { echo "sshd is not installed (apt-get install openssh-server)"; return 3; }
}

index_of() { case "$1" in a) echo 0 ;; b) echo 1 ;; *) die "host must be a or b (got '$1')" ;; esac; }

up() {
  local dir="$1" i ns
  mkdir -p "$dir/bin"
  dir="$(cd "$dir" && pwd)"
  down "$dir" 2>/dev/null || true
  ip link add lhvd-veth0 type veth peer name lhvd-veth1
  for i in 0 1; do
    ns="${NETNS[$i]}"
    ip netns add "$ns"
    ip link set "lhvd-veth$i" netns "$ns"
    ip -n "$ns" link set "lhvd-veth$i" name eth0
    ip -n "$ns" addr add "${ADDRS[$i]}/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    mkdir -p "/etc/netns/$ns"
    printf '127.0.0.1 localhost\n%s %s\n%s %s\n' "${ADDRS[0]}" "${NETNS[0]}" \
      "${ADDRS[1]}" "${NETNS[1]}" >"/etc/netns/$ns/hosts"
  done
  ssh-keygen -q -t ed25519 -N "" -f "$dir/id_ed25519"
  ssh-keygen -q -t ed25519 -N "" -f "$dir/host_key"
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  cat >"$dir/ssh_config" <<EOF
Host *
  IdentityFile $dir/id_ed25519
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  BatchMode yes
  LogLevel ERROR
EOF
  printf '#!/bin/sh\nexec /usr/bin/ssh -F %s/ssh_config "$@"\n' "$dir" >"$dir/bin/ssh"
  chmod +x "$dir/bin/ssh"
  mkdir -p /run/sshd
  for i in 0 1; do
    ns="${NETNS[$i]}"
    cat >"$dir/sshd_$ns.conf" <<EOF
ListenAddress ${ADDRS[$i]}
Port 22
HostKey $dir/host_key
PidFile $dir/sshd_$ns.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin yes
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PrintMotd no
EOF
    ip netns exec "$ns" unshare --uts sh -c \
      "hostname $ns && exec /usr/sbin/sshd -f '$dir/sshd_$ns.conf' -E '$dir/sshd_$ns.log'"
  done
  # Each host reaches the other by name, over ssh. (A daemonized sshd may listen a moment
  # after it returns: under load one check was refused, so ssh tries once a second, 20 times.)
  for i in 0 1; do
    run_on "$i" "$dir" ssh -o ConnectionAttempts=20 "${NETNS[1 - i]}" true ||
      { echo "ssh from ${NETNS[$i]} to ${NETNS[1 - i]} failed; see $dir/sshd_*.log" >&2; return 1; }
  done
}

run_on() {  # index dir cmd...
  local i="$1" dir="$2"; shift 2
  # shellcheck disable=SC2016  # $0 and $@ are the inner shell's
  ip netns exec "${NETNS[$i]}" unshare --uts env PATH="$dir/bin:$PATH" \
    sh -c 'hostname "$0" && exec "$@"' "${NETNS[$i]}" "$@"
}

down() {
  local dir="$1" ns pid
  for ns in "${NETNS[@]}"; do
    if [ -f "$dir/sshd_$ns.pid" ]; then
      pid=$(cat "$dir/sshd_$ns.pid")
      kill "$pid" 2>/dev/null || true
      rm -f "$dir/sshd_$ns.pid"
    fi
    # Anything still running inside the namespace (a stray rank) goes with it.
    kill_namespace_processes "$ns"
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  ip link del lhvd-veth0 2>/dev/null || true
}

case "${1-}" in
  check) check ;;
  up) [ $# -eq 2 ] || die "usage: up DIR"; up "$2" ;;
  run) [ $# -ge 4 ] || die "usage: run a|b DIR CMD [ARG...]"
       i=$(index_of "$2"); dir="$(cd "$3" && pwd)"; shift 3; run_on "$i" "$dir" "$@" ;;
  down) [ $# -eq 2 ] || die "usage: down DIR"; down "$2" ;;
  *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 2 ;;
esac
