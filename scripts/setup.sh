#!/usr/bin/env bash
# Sets up everything tserve needs on a machine with Rust and Python 3: the project's PyTorch venv
# (.venv, torch==2.11.0 from PyPI), the libtorch link the build uses, and a release build.
# Idempotent: a second run checks and returns within seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "$python" -m venv .venv || {
        echo "setup: '$python -m venv' failed; trying virtualenv" >&2
        "$python" -m pip install --quiet --user virtualenv && "$python" -m virtualenv .venv
    }
fi

# Reinstall only when requirements.txt changed since the last successful install.
stamp=.venv/.tserve-requirements
if ! cmp -s requirements.txt "$stamp" 2>/dev/null; then
    echo "setup: installing requirements.txt into .venv (PyTorch is a large download)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt "$stamp"
fi

# .cargo/config.toml points LIBTORCH at .venv/libtorch: the torch package's folder.
torch_dir=$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ln -sfn "$torch_dir" .venv/libtorch

echo "setup: building tserve (release)" >&2
cargo build --release --bins
