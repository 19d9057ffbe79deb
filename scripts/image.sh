#!/usr/bin/env bash
# Builds the container image as tserve:latest with Podman, from the Dockerfile at the root.
# No image registry is reachable from the machines this project is built on, so the two images
# the Dockerfile starts FROM are made locally from Debian's packages (mmdebstrap) when Podman
# does not have them, and imported under the names the FROM lines use; elsewhere Docker or
# Podman pulls the real ones and the same Dockerfile builds unchanged.
#
# Podman runs here with the runc runtime (crun refuses this sandbox's hybrid cgroup layout) and
# with ulimits below the host's (the sandbox cannot raise them): scripts/podman.sh adds those.
#
#   scripts/image.sh [podman build flags]    make the base images if missing, build the image
#   scripts/image.sh --bases-only            only make the base images
set -euo pipefail
cd "$(dirname "$0")/.."
podman=scripts/podman.sh

if ! "$podman" info >/dev/null 2>&1; then
    echo "image: podman cannot run on this machine ($(command -v podman || echo 'not installed')); no image built" >&2
    exit 2
fi

build_image=docker.io/library/rust:1.95-bookworm
runtime_image=docker.io/library/python:3.11-slim-bookworm
base_dir=${TSERVE_BASE_CACHE:-$HOME/.cache/tserve-base}
mkdir -p "$base_dir"

# A Debian bookworm rootfs with `packages`, imported as `name` with `changes` (ENV lines).
make_base() {
    local name=$1 packages=$2 extra=$3
    shift 3
    if "$podman" image exists "$name"; then
        return
    fi
    command -v mmdebstrap >/dev/null || { echo "image: mmdebstrap is needed to make $name (apt-get install mmdebstrap)" >&2; exit 1; }
    echo "image: making $name from Debian's packages" >&2
    local tarball="$base_dir/$(echo "$name" | tr '/:' '__').tar"
    # This machine's extra certificate authorities (a sandbox's TLS egress has its own) are
    # trusted inside too, so pip and cargo reach their registries from a build as from here.
    local trust='cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null; chroot "$1" update-ca-certificates >/dev/null'
    mmdebstrap --quiet --variant=minbase --include="$packages" \
        --customize-hook="$trust" ${extra:+--customize-hook="$extra"} bookworm "$tarball" http://deb.debian.org/debian
    "$podman" import --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' "$@" "$tarball" "$name" >/dev/null
    rm -f "$tarball"
}

# Python as the official python:3.11-slim image has it (python3 with venv and pip on the PATH).
make_base "$runtime_image" "python3,python3-venv,ca-certificates,passwd" "" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]'

# Rust as the official rust image has it (/usr/local/cargo/bin on the PATH), with this machine's
# toolchain copied in (no Rust toolchain can be downloaded here), plus what the build needs.
sysroot=$(rustc --print sysroot)
make_base "$build_image" "gcc,g++,make,python3,python3-venv,ca-certificates,binutils,libc6-dev" \
    "mkdir -p \"\$1/usr/local/rust\" \"\$1/usr/local/cargo/bin\" && cp -a $sysroot/. \"\$1/usr/local/rust/\" && for b in cargo rustc rustdoc; do ln -s /usr/local/rust/bin/\$b \"\$1/usr/local/cargo/bin/\$b\"; done" \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

if [ "${1:-}" = "--bases-only" ]; then
    exit 0
fi
echo "image: building tserve:latest" >&2
started=$(date +%s)
# Docker's image format keeps the HEALTHCHECK (OCI has no such field).
"$podman" build --format docker --network host --tag tserve:latest "$@" .
echo "image: built tserve:latest in $(( $(date +%s) - started ))s, $("$podman" image inspect tserve:latest --format '{{.Size}}' | awk '{printf "%.2f GB", $1/1e9}')" >&2
