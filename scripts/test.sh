#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite. The tests make their own
# TorchScript models with the venv's PyTorch (tests/fixtures/make_models.py). Ends with one line
# of totals over all of cargo's test targets, whether the tests passed or not, and exits with
# cargo's status.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
