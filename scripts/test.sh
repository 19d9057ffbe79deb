#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite. The tests make their own
# TorchScript models with the venv's PyTorch (tests/fixtures/make_models.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release
