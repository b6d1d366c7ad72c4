# shellcheck shell=bash disable=SC2034  # sets variables for the script that sources it
# Shared option parsing for the launch scripts (sourced, not run).
#
# Every script takes the same knobs, turns them into Horovod's environment variables, and
# passes everything after `--` to `python -m lars_hvd.train` unchanged: the global batch is
# never touched here, the training entry point derives the per-worker batch and the
# accumulation from it and from the number of workers.
#
# Knobs (all optional):
#   --np N                     processes in total (default: every slot of the hosts)
#   --hostfile FILE            one host per line: "host slots=N" (Open MPI's form) or "host:N"
#   --gpus-per-node N          slots of a host given without a count (default: the GPUs that
#                              nvidia-smi lists here, else 1)
#   --controller gloo|mpi      horovodrun's controller (default: gloo)
#   --fusion-threshold-mb MB   HOROVOD_FUSION_THRESHOLD, in MB (0 turns tensor fusion off)
#   --cycle-time-ms MS         HOROVOD_CYCLE_TIME, the wait between fusion cycles
#   --network-interface IF     the NIC for Gloo, NCCL and MPI's TCP (HOROVOD_GLOO_IFACE,
#                              NCCL_SOCKET_IFNAME, Open MPI's btl/oob_tcp_if_include)
#   --hierarchical-allreduce   HOROVOD_HIERARCHICAL_ALLREDUCE=1 (NCCL in a node, then across
#                              nodes; Horovod honours it with NCCL under MPI only)
#   --timeline FILE            a Horovod timeline (chrome://tracing) written by rank 0
#   --stall-check-s S          HOROVOD_STALL_CHECK_TIME_SECONDS (warn about stalled ranks)
#   --stall-shutdown-s S       HOROVOD_STALL_SHUTDOWN_TIME_SECONDS (default here: 300; a hang
#                              ends the job instead of holding the allocation)
#   --ssh-port PORT, --ssh-identity FILE   how the launcher reaches other hosts
#   --python PY                the interpreter on every host (default: $LARS_HVD_PYTHON, else
#                              python3)
#   --dry-run                  print the exact command (one shell-quoted line) and exit
#   -h, --help                 this text

set -euo pipefail

NP=""
HOSTFILE=""
GPUS_PER_NODE=""
CONTROLLER="gloo"
FUSION_MB=""
CYCLE_MS=""
HIERARCHICAL=""
IFACE=""
TIMELINE=""
STALL_CHECK=""
STALL_SHUTDOWN="${HOROVOD_STALL_SHUTDOWN_TIME_SECONDS:-300}"
SSH_PORT=""
SSH_IDENTITY=""
PYTHON="${LARS_HVD_PYTHON:-python3}"
DRY_RUN=0
TRAIN_ARGS=()
EXTRA_ARGS=()  # options a script defines itself (see its own usage)

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

header() {  # the first comment block of a file, without the "# "
  awk 'NR > 1 && /^#( |$)/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"
}

usage() {  # the script's header, then the shared knobs above
  header "$0"
  echo
  header "${BASH_SOURCE[0]}" | sed -n '/^Knobs/,$p'
}

positive_int() {  # name value
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer (got '$2')"
}

parse_common() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --np) positive_int --np "${2-}"; NP="$2"; shift 2 ;;
      --hostfile) [ -f "${2-}" ] || die "--hostfile '${2-}' is not a file"; HOSTFILE="$2"; shift 2 ;;
      --gpus-per-node) positive_int --gpus-per-node "${2-}"; GPUS_PER_NODE="$2"; shift 2 ;;
      --controller)
        [[ "${2-}" =~ ^(gloo|mpi)$ ]] || die "--controller must be gloo or mpi (got '${2-}')"
        CONTROLLER="$2"; shift 2 ;;
      --fusion-threshold-mb)
        [[ "${2-}" =~ ^[0-9]+$ ]] || die "--fusion-threshold-mb must be an integer >= 0 (got '${2-}')"
        FUSION_MB="$2"; shift 2 ;;
      --cycle-time-ms)
        [[ "${2-}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--cycle-time-ms must be a number (got '${2-}')"
        CYCLE_MS="$2"; shift 2 ;;
      --network-interface) [ -n "${2-}" ] || die "--network-interface needs a name"; IFACE="$2"; shift 2 ;;
      --hierarchical-allreduce) HIERARCHICAL=1; shift ;;
      --timeline) [ -n "${2-}" ] || die "--timeline needs a file name"; TIMELINE="$2"; shift 2 ;;
      --stall-check-s) positive_int --stall-check-s "${2-}"; STALL_CHECK="$2"; shift 2 ;;
      --stall-shutdown-s) positive_int --stall-shutdown-s "${2-}"; STALL_SHUTDOWN="$2"; shift 2 ;;
      --ssh-port) positive_int --ssh-port "${2-}"; SSH_PORT="$2"; shift 2 ;;
      --ssh-identity) [ -f "${2-}" ] || die "--ssh-identity '${2-}' is not a file"; SSH_IDENTITY="$2"; shift 2 ;;
      --python) [ -n "${2-}" ] || die "--python needs an interpreter"; PYTHON="$2"; shift 2 ;;
      --dry-run) DRY_RUN=1; shift ;;
      -h|--help) usage; exit 0 ;;
      --) shift; TRAIN_ARGS=("$@"); break ;;
      *) EXTRA_ARGS+=("$1"); shift ;;
    esac
  done
}

gpus_here() {
  if [ -n "$GPUS_PER_NODE" ]; then echo "$GPUS_PER_NODE"; return; fi
  if command -v nvidia-smi >/dev/null 2>&1; then
    local n; n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    if [ "$n" -gt 0 ]; then echo "$n"; return; fi
  fi
  echo 1
}

# The hosts as "host:slots,host:slots" (horovodrun -H, mpirun -H) from --hostfile.
hosts_from_file() {
  local default_slots line host slots out=()
  default_slots=$(gpus_here)
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%%#*}"
    read -r -a words <<<"$line" || true
    [ ${#words[@]} -gt 0 ] || continue
    host="${words[0]}"; slots="$default_slots"
    if [[ "$host" == *:* ]]; then slots="${host##*:}"; host="${host%%:*}"; fi
    if [ ${#words[@]} -gt 1 ] && [[ "${words[1]}" == slots=* ]]; then slots="${words[1]#slots=}"; fi
    [[ "$slots" =~ ^[1-9][0-9]*$ ]] || die "$HOSTFILE: bad slot count '$slots' for host '$host'"
    out+=("$host:$slots")
  done <"$1"
  [ ${#out[@]} -gt 0 ] || die "$1 lists no hosts"
  local IFS=,; echo "${out[*]}"
}

total_slots() {  # "a:2,b:2" -> 4
  local sum=0 item
  IFS=, read -r -a items <<<"$1"
  for item in "${items[@]}"; do sum=$((sum + ${item##*:})); done
  echo "$sum"
}

hostfile_plan() {  # the hostfile scripts: HOSTS ("a:8,b:8") and NP, checked
  [ ${#EXTRA_ARGS[@]} -eq 0 ] || die "unknown option '${EXTRA_ARGS[0]}' (see --help)"
  [ -n "$HOSTFILE" ] || die "--hostfile is required (one node: launch/local.sh)"
  HOSTS=$(hosts_from_file "$HOSTFILE")
  local slots
  slots=$(total_slots "$HOSTS")
  NP="${NP:-$slots}"
  [ "$NP" -le "$slots" ] || die "--np $NP is more than the $slots slots in $HOSTFILE"
  horovod_env
  train_command
}

# Horovod's knobs as NAME=VALUE words (for `env`, `mpirun -x` and manifests).
horovod_env() {
  HOROVOD_ENV=("HOROVOD_STALL_SHUTDOWN_TIME_SECONDS=$STALL_SHUTDOWN")
  [ -z "$STALL_CHECK" ] || HOROVOD_ENV+=("HOROVOD_STALL_CHECK_TIME_SECONDS=$STALL_CHECK")
  [ -z "$FUSION_MB" ] || HOROVOD_ENV+=("HOROVOD_FUSION_THRESHOLD=$((FUSION_MB * 1024 * 1024))")
  [ -z "$CYCLE_MS" ] || HOROVOD_ENV+=("HOROVOD_CYCLE_TIME=$CYCLE_MS")
  [ -z "$TIMELINE" ] || HOROVOD_ENV+=("HOROVOD_TIMELINE=$TIMELINE")
  [ -z "$HIERARCHICAL" ] || HOROVOD_ENV+=("HOROVOD_HIERARCHICAL_ALLREDUCE=1")
  if [ -n "$IFACE" ]; then
    HOROVOD_ENV+=("HOROVOD_GLOO_IFACE=$IFACE" "NCCL_SOCKET_IFNAME=$IFACE")
  fi
  return 0
}

horovodrun_bin() {  # horovodrun from PATH, else the one installed beside --python
  local py
  if command -v horovodrun >/dev/null 2>&1; then echo horovodrun; return; fi
  py="$(command -v "$PYTHON" || true)"
  if [ -n "$py" ] && [ -x "$(dirname "$py")/horovodrun" ]; then echo "$(dirname "$py")/horovodrun"; return; fi
  if [ "$DRY_RUN" = 1 ]; then echo horovodrun; return; fi  # show the command anyway
  die "horovodrun is not on PATH nor beside --python $PYTHON (activate the environment that has Horovod)"
}

train_command() {  # the program every rank runs
  TRAIN=("$PYTHON" -m lars_hvd.train "${TRAIN_ARGS[@]}")
}

run() {  # run "$@", or print it shell-quoted with --dry-run
  if [ "$DRY_RUN" = 1 ]; then
    printf '%q ' "$@" | sed 's/ $//'
    echo
    exit 0
  fi
  exec "$@"
}
