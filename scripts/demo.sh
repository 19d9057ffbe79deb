#!/usr/bin/env bash
# The quick start: set up, make the demo model (TorchScript ResNet-18, random weights, ImageNet
# labels), pack it with tserve-archiver into model_store/resnet18.mar, and serve it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -f model_store/resnet18.mar ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    .venv/bin/python tests/fixtures/make_models.py --demo "$work"
    target/release/tserve-archiver --model-name resnet18 --version 1.0 \
        --serialized-file "$work/resnet18.pt" --extra-files "$work/index_to_name.json" \
        --handler image_classifier --export-path model_store
    # Removed now: the server below replaces this shell (exec), so no EXIT trap would run later.
    rm -rf "$work"
    trap - EXIT
fi

cat <<'TXT'

tserve is starting: inference on http://127.0.0.1:8080, management on http://127.0.0.1:8081.
Token authorization is on (as in TorchServe 0.12): the keys are in key_file.json here.
In another terminal, in this folder, try:

    KEY=$(python3 -c 'import json; print(json.load(open("key_file.json"))["inference"]["key"])')
    MKEY=$(python3 -c 'import json; print(json.load(open("key_file.json"))["management"]["key"])')
    curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/ping
    curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/predictions/resnet18 -T examples/kitten_small.jpg
    curl -H "Authorization: Bearer $MKEY" http://127.0.0.1:8081/models/resnet18

Stop it with Ctrl-C (or `target/release/tserve --stop`).

TXT
exec target/release/tserve --start --foreground --ncs --model-store model_store --models resnet18.mar
