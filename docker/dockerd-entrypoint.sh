#!/bin/sh
# The image's entrypoint, with pytorch/torchserve's contract and without its `tail -f /dev/null`:
# whatever runs the server is exec'd, so the server is the container's main process and SIGTERM
# (docker/podman stop, a pod's termination) reaches it and drains it.
#
#   serve                      tserve with the image's config.properties (TorchServe's shorthand;
#                              SageMaker and Vertex AI start containers this way)
#   torchserve --start ...     as written, kept in the foreground (TorchServe's runs in the
#   tserve --start ...         background, which in a container needs a shell kept alive)
#   anything else              run as given
set -e

if [ "$1" = "serve" ]; then
    shift
    set -- torchserve --start --ts-config /home/model-server/config.properties --disable-token-auth --enable-model-api "$@"
    # SageMaker puts the model artifact (the .mar files) in /opt/ml/model.
    if [ -d /opt/ml/model ] && ls /opt/ml/model/*.mar >/dev/null 2>&1; then
        set -- "$@" --model-store /opt/ml/model --models all
    fi
fi

case "$1" in
    torchserve | tserve)
        start=false foreground=false
        for arg in "$@"; do
            case "$arg" in
                --start) start=true ;;
                --foreground) foreground=true ;;
            esac
        done
        if $start && ! $foreground; then
            exec "$@" --foreground
        fi
        ;;
esac
exec "$@"
