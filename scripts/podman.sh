#!/usr/bin/env bash
# Podman as it runs on the machines this project is built on: the runc runtime (crun refuses their
# hybrid cgroup layout) and ulimits below the host's (a sandbox cannot raise them). Elsewhere
# these flags are harmless. Used by scripts/image.sh and the container tests.
set -euo pipefail
global=(--runtime runc)
case "${1:-}" in
    build | run | create)
        sub=$1
        shift
        exec podman "${global[@]}" "$sub" --ulimit nofile=16384:16384 --ulimit nproc=8192:8192 "$@"
        ;;
esac
exec podman "${global[@]}" "$@"
