# shellcheck shell=bash
# What the test-host scripts (two_hosts.sh, slurm_cluster.sh) share: sourced, not run.

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

check_netns() {  # prints why network namespaces cannot be made here, and fails
  [ "$(id -u)" = 0 ] || { echo "network namespaces need root (running as uid $(id -u))"; return 1; }
  command -v ip >/dev/null || { echo "iproute2's ip is not installed"; return 1; }
  command -v unshare >/dev/null || { echo "unshare (util-linux) is not installed"; return 1; }
  # (named after this shell: the two scripts' checks may run at once, from two test workers)
  if ! ip netns add "lhvd-probe-$$" 2>/dev/null; then
    echo "ip netns add fails here (no CAP_SYS_ADMIN, or no network-namespace support)"
    return 1
  fi
  ip netns del "lhvd-probe-$$"
}

kill_namespace_processes() {  # namespace: kill -9 everything still running inside it
  local pid
  for pid in $(ip netns pids "$1" 2>/dev/null || true); do kill -9 "$pid" 2>/dev/null || true; done
}
