#!/usr/bin/env bash
# Interop tests: real third-party WebSocket clients against `switchboard echo`.
#   - Python `websockets` (sync client)  -> tests/interop/test_websockets.py
#   - Node `ws`                          -> tests/interop/test_ws.mjs
# Both clients are installed, pinned, into $ROOT/.cache/interop/ (ignored by git);
# the install is skipped when the pinned version is already there.
# Exits non-zero if any case failed, a client crashed or timed out, or the server died.
#
# Usage: tests/interop/run.sh
set -euo pipefail

WEBSOCKETS_VERSION="17.4"   # PyPI `websockets`
WS_VERSION="8.23.0"         # npm `ws`

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$ROOT/.cache/interop"
VENV="$OUT/venv"
NODE_PREFIX="$OUT/node"
PYTHON="${INTEROP_PYTHON:-python3}"
mkdir -p "$OUT"

# --- clients -----------------------------------------------------------------
py_check() {
    [[ -x "$VENV/bin/python" ]] &&
        "$VENV/bin/python" -c "import sys, websockets.version as v; sys.exit(v.version != '$WEBSOCKETS_VERSION')" 2>/dev/null
}
if py_check; then
    echo "interop: websockets $WEBSOCKETS_VERSION already installed"
else
    echo "interop: installing websockets==$WEBSOCKETS_VERSION into $VENV"
    rm -rf "$VENV"
    timeout 120 "$PYTHON" -m venv "$VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 timeout 300 "$VENV/bin/python" -m pip install --quiet \
        --no-input "websockets==$WEBSOCKETS_VERSION"
    py_check || { echo "interop: websockets $WEBSOCKETS_VERSION did not install" >&2; exit 1; }
fi

node_check() {
    [[ -f "$NODE_PREFIX/node_modules/ws/package.json" ]] &&
        node -e "process.exit(require(process.argv[1]).version === process.argv[2] ? 0 : 1)" \
            "$NODE_PREFIX/node_modules/ws/package.json" "$WS_VERSION" 2>/dev/null
}
if node_check; then
    echo "interop: ws $WS_VERSION already installed"
else
    echo "interop: installing ws@$WS_VERSION into $NODE_PREFIX"
    rm -rf "$NODE_PREFIX"
    mkdir -p "$NODE_PREFIX"
    timeout 300 npm install --prefix "$NODE_PREFIX" --save-exact --no-audit --no-fund \
        --loglevel=error "ws@$WS_VERSION" >/dev/null
    node_check || { echo "interop: ws $WS_VERSION did not install" >&2; exit 1; }
fi

# --- server ------------------------------------------------------------------
(cd "$ROOT" && timeout 1800 cargo build --release --quiet)

server_out="$OUT/server.out"
server_log="$OUT/server.log"
: >"$server_out"
"$ROOT/target/release/switchboard" echo --listen 127.0.0.1:0 >"$server_out" 2>"$server_log" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT

# Alive = exists and is not a zombie.
server_alive() {
    kill -0 "$server_pid" 2>/dev/null || return 1
    local state
    state="$(awk '{print $3}' "/proc/$server_pid/stat" 2>/dev/null || echo X)"
    [[ "$state" != Z && "$state" != X ]]
}

addr=""
for _ in $(seq 1 200); do   # up to ~10 s
    addr="$(sed -n 's/^listening on //p' "$server_out" | head -n1)"
    [[ -n "$addr" ]] && break
    if ! server_alive; then
        echo "interop: server exited at startup: $(cat "$server_log")" >&2
        exit 1
    fi
    sleep 0.05
done
[[ -n "$addr" ]] || { echo "interop: server did not print its address" >&2; exit 1; }
url="ws://$addr/"
echo "interop: switchboard echo on $url (pid $server_pid)"

# --- clients against the server ---------------------------------------------
failed=()

# Runs one client script (bounded); records a failure by name.
run_client() {
    local name="$1" rc=0
    shift
    timeout 300 "$@" || rc=$?
    if [[ $rc -eq 124 ]]; then
        failed+=("$name (timed out after 300 s)")
    elif [[ $rc -ne 0 ]]; then
        failed+=("$name (exit $rc)")
    fi
}
run_client websockets "$VENV/bin/python" "$HERE/test_websockets.py" "$url"
run_client ws env INTEROP_NODE_PREFIX="$NODE_PREFIX" node "$HERE/test_ws.mjs" "$url"

if ! server_alive; then
    failed+=("server died during the run")
    echo "interop: server log tail:" >&2
    tail -n 20 "$server_log" >&2 || true
fi
if grep -q panicked "$server_log"; then
    failed+=("server panicked: $(grep -m1 panicked "$server_log")")
fi

if [[ ${#failed[@]} -gt 0 ]]; then
    printf 'interop: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
