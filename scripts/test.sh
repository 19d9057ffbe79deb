#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite. The tests make their own
# TorchScript models with the venv's PyTorch (tests/fixtures/make_models.py). Ends with one line
# of totals over all of cargo's test targets, whether the tests passed or not, and exits with
# cargo's status.
#
# The deployment tests need Debian's nginx (replicas behind a load balancer) and, for the
# container image, Podman, runc and mmdebstrap: installed here where apt-get can. Where Podman
# runs, the image is built first (scripts/image.sh) and its test must pass; where it cannot, the
# container test says it skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

needed=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || needed+=(nginx-light)
command -v podman >/dev/null || needed+=(podman)
command -v runc >/dev/null || needed+=(runc)
command -v mmdebstrap >/dev/null || needed+=(mmdebstrap)
if [ ${#needed[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "test: installing ${needed[*]} (Debian packages)" >&2
        apt-get install -y -q "${needed[@]}" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${needed[@]}" >/dev/null 2>&1; } \
            || echo "test: could not install ${needed[*]}; the tests that need them will say so" >&2
    else
        echo "test: ${needed[*]} missing and apt-get is not usable here; the tests that need them will say so" >&2
    fi
fi

if scripts/podman.sh info >/dev/null 2>&1; then
    started=$(date +%s)
    if scripts/image.sh >/tmp/tserve-image-build.log 2>&1; then
        echo "test: built tserve:latest in $(( $(date +%s) - started ))s" >&2
    else
        tail -n 30 /tmp/tserve-image-build.log >&2
        echo "test: scripts/image.sh failed after $(( $(date +%s) - started ))s; the container test will fail" >&2
    fi
    export TSERVE_REQUIRE_IMAGE=1
else
    echo "test: Podman cannot run here: the container test will be SKIPPED" >&2
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
