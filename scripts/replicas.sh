#!/usr/bin/env bash
# N tserve replicas behind nginx on loopback (deploy/nginx/nginx.conf), each serving the same
# model store, then wrk against nginx: the throughput of 1, 2 and 3 replicas on this machine.
#
#   scripts/replicas.sh [MODEL_STORE ARCHIVE]   default: the test fixtures' MLP (target/test-fixtures)
#   REPLICAS="1 2 3" DURATION=10s CONNECTIONS=32 scripts/replicas.sh
#
# Every replica, nginx and wrk share this machine's cores: more replicas than cores measures the
# scheduler, not the design. Needs nginx and wrk (Debian: nginx-light, wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
store=$(realpath "${1:-target/test-fixtures}")
archive=${2:-mlp.mar}
model=${archive%.mar}
body=${BODY:-'[0.1, 0.2, 0.3, 0.4]'}
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

printf 'wrk.method = "POST"\nwrk.body = [=[%s]=]\nwrk.headers["Content-Type"] = "application/json"\n' "$body" > "$work/post.lua"
echo "replicas  requests/s  p50  p99  errors   ($(nproc) cores; wrk -t2 -c$connections -d$duration through nginx)"
for n in ${REPLICAS:-1 2 3}; do
    servers=""
    for i in $(seq 1 "$n"); do
        port=$(free_port)
        dir="$work/replica-$n-$i"
        mkdir -p "$dir"
        printf 'inference_address=http://127.0.0.1:%s\nmanagement_address=http://127.0.0.1:0\nmetrics_address=http://127.0.0.1:0\ngrpc_inference_port=0\ngrpc_management_port=0\ndisable_token_authorization=true\n' "$port" > "$dir/config.properties"
        (cd "$dir" && TMPDIR="$dir" RUST_LOG=warn exec "$OLDPWD/target/release/tserve" --start --foreground --ncs \
            --ts-config config.properties --model-store "$store" --models "$archive" > "$dir/out.log" 2>&1) &
        pids+=($!)
        servers+="server 127.0.0.1:$port max_fails=1 fail_timeout=2s;"$'\n'
        until curl -sf "http://127.0.0.1:$port/ping" > /dev/null; do sleep 0.1; done
    done
    nginx_port=$(free_port)
    mkdir -p "$work/nginx-$n/logs" "$work/nginx-$n/tmp"
    python3 - "$work/nginx-$n/nginx.conf" "$nginx_port" "$servers" <<'PY'
import sys
path, port, servers = sys.argv[1:]
text = open("deploy/nginx/nginx.conf").read()
open(path, "w").write(text.replace("@LISTEN@", f"127.0.0.1:{port}").replace("@SERVERS@", servers))
PY
    nginx -p "$work/nginx-$n" -c "$work/nginx-$n/nginx.conf" -g 'daemon off;' 2> "$work/nginx-$n/logs/stderr.log" &
    pids+=($!)
    until curl -sf "http://127.0.0.1:$nginx_port/predictions/$model" -H "Content-Type: application/json" -d "$body" > /dev/null; do sleep 0.1; done
    wrk -t2 -c"$connections" -d"$duration" --latency -s "$work/post.lua" "http://127.0.0.1:$nginx_port/predictions/$model" > "$work/wrk-$n.txt"
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk-$n.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk-$n.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk-$n.txt")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk-$n.txt" | tr '\n' ' ')
    echo "$n         $rps     $p50  $p99  ${errors:-0}"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
done
