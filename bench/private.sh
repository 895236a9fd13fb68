#!/usr/bin/env bash
# Private messages on `switchboard serve`, on the memory store or on Redis:
# `switchboard bench private` signs in USERS users through sessions written over the
# admin listener, and each sends a private message to the next every EVERY seconds
# for SECONDS. Prints the bench's JSON line, then the server's CPU time and peak RSS.
# Everything on 127.0.0.1; a redis-server is started on a free port for `redis`.
#
# Usage: bench/private.sh memory|redis [USERS 500] [EVERY 0.25] [SECONDS 10]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=${1:?memory or redis}; USERS=${2:-500}; EVERY=${3:-0.25}; SECS=${4:-10}
(cd "$ROOT" && cargo build --release --quiet)
B="$ROOT/target/release/switchboard"
WORK=$(mktemp -d)
EXTRA=()
RPID=
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if [ "$MODE" = redis ]; then
    RP=$(free_port)
    redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no > "$WORK/redis.log" 2>&1 &
    RPID=$!
    for _ in $(seq 50); do redis-cli -p "$RP" ping > /dev/null 2>&1 && break; sleep 0.1; done
    EXTRA=(--redis "redis://127.0.0.1:$RP/0")
fi
"$B" serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --max-messages-per-second 0 \
    "${EXTRA[@]}" > "$WORK/out" 2> "$WORK/err" &
SPID=$!
for _ in $(seq 50); do grep -q listening "$WORK/out" && break; sleep 0.1; done
PORT=$(grep -o '[0-9]*$' "$WORK/out")
ADMIN=$(grep 'admin listener' "$WORK/err" | grep -o '[0-9]*$')
timeout $((${SECS%.*} + 60)) "$B" bench private "ws://127.0.0.1:$PORT/" --admin-port "$ADMIN" \
    --users "$USERS" --every "$EVERY" --seconds "$SECS"
read -r -a STAT < "/proc/$SPID/stat"
echo "server_cpu_s=$(python3 -c "print((${STAT[13]} + ${STAT[14]}) / $(getconf CLK_TCK))")" \
    "peak_rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$SPID/status")"
kill -INT "$SPID"; wait "$SPID" || true
if [ -n "$RPID" ]; then kill "$RPID"; wait "$RPID" 2> /dev/null || true; fi
rm -rf "$WORK"
