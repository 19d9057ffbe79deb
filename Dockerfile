# tserve's container image, a drop-in for pytorch/torchserve: the same ports (8080/8081/8082,
# gRPC 7070/7071), /home/model-server with model-store/ and config.properties, `serve` as the
# default command, `torchserve --start ...` accepted as a command, a non-root user (uid 1000), and
# the server as the process SIGTERM reaches, so `docker stop` drains it.
#
#   scripts/image.sh                                   (Podman here, base images made locally)
#   docker build -t tserve:latest .                    (anywhere with a registry)
#
# CPU by default; torch comes from PyPI, whose build carries CUDA, so the same image serves on a GPU
# host given the GPUs (`--gpus all`, or the CDI devices with Podman).
ARG BUILD_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=docker.io/library/python:3.11-slim-bookworm

# Build stage: the wheel, from this source, linked against PyPI's torch==2.11.0 (only torch: the
# project's test requirements stay out of the image's build).
FROM ${BUILD_IMAGE} AS build
RUN python3 -c 'import ensurepip' 2>/dev/null \
    || (apt-get update && apt-get install -y --no-install-recommends python3-venv && rm -rf /var/lib/apt/lists/*)
WORKDIR /src
COPY . .
# The pip cache and cargo's registry and target folder outlive a build, so a rebuild downloads
# neither torch nor crates again and recompiles only what changed. (PIP_CACHE_DIR is explicit:
# an image without HOME set would otherwise cache under /.cache, outside the mount.)
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    python3 -m venv .venv \
    && PIP_CACHE_DIR=/root/.cache/pip .venv/bin/pip install --disable-pip-version-check torch==2.11.0 \
    && ln -sfn "$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')" .venv/libtorch \
    && cargo build --release --bins \
    && scripts/wheel.sh --no-build \
    && mkdir -p /wheel && cp dist/tserve-*.whl /wheel/

# Runtime stage: Python, torch and the wheel; nothing of the build.
FROM ${RUNTIME_IMAGE}
ENV PATH=/opt/tserve/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TEMP=/home/model-server/tmp \
    TMPDIR=/home/model-server/tmp
RUN useradd --create-home --home-dir /home/model-server --uid 1000 --user-group model-server \
    && mkdir -p /home/model-server/model-store /home/model-server/wf-store /home/model-server/tmp \
               /home/model-server/logs \
    && python3 -m venv /opt/tserve
# torch alone in its own layer (several GB with PyPI's CUDA libraries): cached while only tserve changes.
RUN --mount=type=cache,target=/root/.cache/pip \
    PIP_CACHE_DIR=/root/.cache/pip /opt/tserve/bin/pip install --disable-pip-version-check torch==2.11.0
COPY --from=build /wheel/ /tmp/wheel/
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/tserve/bin/pip install --disable-pip-version-check /tmp/wheel/tserve-*.whl \
    && rm -rf /tmp/wheel \
    # `torchserve` runs tserve (in place of the torchserve package's own Java-frontend launcher).
    && ln -sf tserve /opt/tserve/bin/torchserve
COPY docker/config.properties /home/model-server/config.properties
COPY docker/dockerd-entrypoint.sh /usr/local/bin/dockerd-entrypoint.sh
RUN chown -R model-server:model-server /home/model-server
USER model-server
WORKDIR /home/model-server
EXPOSE 8080 8081 8082 7070 7071
HEALTHCHECK --interval=10s --timeout=3s CMD python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/ping', timeout=2)"
ENTRYPOINT ["/usr/local/bin/dockerd-entrypoint.sh"]
CMD ["serve"]
