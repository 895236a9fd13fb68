#!/usr/bin/env bash
# Several nodes on one Redis: NODES `switchboard serve --redis` on 127.0.0.1, and
# `switchboard bench private` and `bench room` spreading their users over them, with
# the nodes' and Redis's CPU read over the measured window. With NODES=1 the same load
# on one node is the baseline. Prints one JSON line per scenario.
#
# Usage: bench/cluster.sh NODES [private|room|all] [USERS 500] [MEMBERS 1000]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES=${1:?how many nodes}; WHICH=${2:-all}; USERS=${3:-500}; MEMBERS=${4:-1000}
(cd "$ROOT" && cargo build --release --quiet)
B="$ROOT/target/release/switchboard"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -INT "$p" 2> /dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
    [ -n "${RPID:-}" ] && { kill "$RPID" 2> /dev/null; wait "$RPID" 2> /dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no > "$WORK/redis.log" 2>&1 &
RPID=$!
for _ in $(seq 50); do redis-cli -p "$RP" ping > /dev/null 2>&1 && break; sleep 0.1; done
URLS=()
ADMIN=
for i in $(seq "$NODES"); do
    "$B" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --max-messages-per-second 0 \
        --redis "redis://127.0.0.1:$RP/0" > "$WORK/out$i" 2> "$WORK/err$i" &
    PIDS+=($!)
    for _ in $(seq 50); do grep -q listening "$WORK/out$i" && grep -q 'admin listener' "$WORK/err$i" && break; sleep 0.1; done
    URLS+=("ws://127.0.0.1:$(grep -o '[0-9]*$' "$WORK/out$i")/")
    [ -n "$ADMIN" ] || ADMIN=$(grep 'admin listener' "$WORK/err$i" | grep -o '[0-9]*$')
done
LIST=$(IFS=,; echo "${URLS[*]}")
PIDLIST=$(IFS=,; echo "${PIDS[*]}")
if [ "$WHICH" = private ] || [ "$WHICH" = all ]; then
    timeout 120 "$B" bench private "$LIST" --admin-port "$ADMIN" --users "$USERS" \
        --every 0.25 --seconds 10 --pids "$PIDLIST" --redis-port "$RP"
fi
if [ "$WHICH" = room ] || [ "$WHICH" = all ]; then
    timeout 300 "$B" bench room "$LIST" --admin-port "$ADMIN" --members "$MEMBERS" \
        --rate 20 --seconds 10 --pids "$PIDLIST" --redis-port "$RP"
fi
