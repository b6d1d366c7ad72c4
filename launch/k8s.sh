#!/usr/bin/env bash
# Kubernetes: render launch/k8s/mpijob.yaml (a Kubeflow MPI Operator MPIJob) and apply it.
#
#   launch/k8s.sh --image registry/lars_hvd:latest --nodes 8 -- --preset resnet50-imagenet-32k --data-dir /data/imagenet
#   launch/k8s.sh --image registry/lars_hvd:latest --nodes 2 --dry-run -- --global-batch-size 4096
#
# Own options: --image IMAGE (required), --nodes N worker pods (default 1), --name NAME (default
# lars-hvd). Ranks = nodes x --gpus-per-node. --dry-run prints the manifest instead of piping
# it to `kubectl apply -f -`. Everything after `--` goes to `python -m lars_hvd.train`
# unchanged.

HERE="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=common.sh
source "$HERE/common.sh"
parse_common "$@"
IMAGE="" NODES=1 NAME=lars-hvd
set -- "${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"}"
while [ $# -gt 0 ]; do
  case "$1" in
    --image) [ -n "${2-}" ] || die "--image needs a container image"; IMAGE="$2"; shift 2 ;;
    --nodes) positive_int --nodes "${2-}"; NODES="$2"; shift 2 ;;
    --name)
      [[ "${2-}" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "--name must be a DNS label (got '${2-}')"
      NAME="$2"; shift 2 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ -n "$IMAGE" ] || die "--image is required: an image with lars_hvd installed"
GPUS="$(gpus_here)"
NP="${NP:-$((NODES * GPUS))}"
horovod_env

yaml_items() {  # each argument as a YAML list item, JSON-quoted (valid YAML)
  local item
  for item in "$@"; do
    printf '                - %s\n' "$("$PYTHON" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$item" 2>/dev/null || printf '"%s"' "$item")"
  done
}
env_items=()
for kv in "${HOROVOD_ENV[@]}"; do env_items+=(-x "$kv"); done
[ -z "$IFACE" ] || env_items+=(-mca btl_tcp_if_include "$IFACE" -mca oob_tcp_if_include "$IFACE")
manifest=$(sed -e "s|__NAME__|$NAME|" -e "s|__IMAGE__|$IMAGE|g" -e "s|__NP__|$NP|" \
               -e "s|__NODES__|$NODES|" -e "s|__GPUS_PER_NODE__|$GPUS|g" \
               "$HERE/k8s/mpijob.yaml")
mpirun_env=$(yaml_items "${env_items[@]}")
train_args=$(yaml_items "${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"}")
manifest="${manifest/__MPIRUN_ENV__/"$mpirun_env"}"
manifest="${manifest/__TRAIN_ARGS__/"$train_args"}"
if [ "$DRY_RUN" = 1 ]; then
  printf '%s\n' "$manifest"
  exit 0
fi
printf '%s\n' "$manifest" | kubectl apply -f -
