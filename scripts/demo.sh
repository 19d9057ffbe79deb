#!/usr/bin/env bash
# The quick start: set up, make the demo model (TorchScript ResNet-18, random weights, ImageNet
# labels) as model_store/resnet18.mar, and serve it in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python tests/fixtures/make_models.py --demo model_store

cat <<'TXT'

tserve is starting on http://127.0.0.1:8080. In another terminal, try:

    curl http://127.0.0.1:8080/ping
    curl http://127.0.0.1:8080/predictions/resnet18 -T examples/kitten_small.jpg

Stop it with Ctrl-C (or `target/release/tserve --stop`).

TXT
exec target/release/tserve --start --foreground --ncs --model-store model_store --models resnet18.mar
