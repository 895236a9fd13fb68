#!/usr/bin/env bash
# Runs the Autobahn|Testsuite, sections 1-10, in both roles, and fails on any FAILED
# case: the server role (fuzzingclient against `switchboard echo`), then the client
# role (fuzzingserver against examples/autobahn_client.rs, built on the project's
# client). Sections 12 and 13 test permessage-deflate, which is
# not implemented (the server accepts no extension), so they are not run.
#
# Usage: tests/autobahn/run.sh [CASES...]     (default: 1.* 2.* ... 10.*)
# Reports: .cache/autobahn/reports/index.html (server role) and
# .cache/autobahn/client-reports/index.html (client role); summaries on stdout.
# AUTOBAHN_ROLES="server client" (the default) chooses which roles run.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$ROOT/.cache/autobahn"
mkdir -p "$OUT"

"$HERE/install.sh"
(cd "$ROOT" && cargo build --release --quiet && cargo build --release --quiet --example autobahn_client)
roles="${AUTOBAHN_ROLES:-server client}"
server_pid=
wstest_pid=
stop_started() {
    for pid in $server_pid $wstest_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap stop_started EXIT

cases=("$@")
if [[ ${#cases[@]} -eq 0 ]]; then
    cases=(1.* 2.* 3.* 4.* 5.* 6.* 7.* 8.* 9.* 10.*)
fi

run_server_role() {
    # Start the server on a free port; its first line says which.
    log="$OUT/server.log"
    "$ROOT/target/release/switchboard" echo --listen 127.0.0.1:0 >"$OUT/server.out" 2>"$log" &
    server_pid=$!
    for _ in $(seq 1 100); do
        grep -q '^listening on ' "$OUT/server.out" 2>/dev/null && break
        if ! kill -0 "$server_pid" 2>/dev/null; then echo "server exited: $(cat "$log")" >&2; exit 1; fi
        read -r -t 0.05 <> <(:) || true   # 50 ms, without spawning sleep
    done
    addr="$(sed -n 's/^listening on //p' "$OUT/server.out" | head -n1)"
    [[ -n "$addr" ]] || { echo "server did not start" >&2; exit 1; }

    cases_json="$(printf '"%s",' "${cases[@]}")"
    cat >"$OUT/fuzzingclient.json" <<JSON
    {
      "outdir": "$OUT/reports",
      "servers": [{"agent": "switchboard", "url": "ws://$addr"}],
      "cases": [${cases_json%,}],
      "exclude-cases": [],
      "exclude-agent-cases": {}
    }
JSON
    rm -rf "$OUT/reports"
    echo "autobahn: fuzzingclient against ws://$addr, cases ${cases[*]}"
    (cd "$OUT" && timeout 1200 "$HERE/wstest.sh" -m fuzzingclient -s "$OUT/fuzzingclient.json" >"$OUT/wstest.log" 2>&1) || {
        echo "wstest failed; last lines of its log:" >&2
        tail -n 30 "$OUT/wstest.log" >&2
        exit 1
    }

    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "the server died during the run: $(tail -n 20 "$log")" >&2
        exit 1
    fi

    if grep -q panicked "$log"; then
        echo "the server panicked during the run:" >&2
        grep -A3 panicked "$log" | head -n 20 >&2
        exit 1
    fi

    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    echo "autobahn, server role:"
    python3 "$HERE/summarize.py" "$OUT/reports/index.json"
}

# The client role: wstest's fuzzingserver listens on a free port, and the agent runs
# every case against it.
run_client_role() {
    local port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    cat >"$OUT/fuzzingserver.json" <<JSON
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "$OUT/client-reports",
  "cases": [${cases_json%,}],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
    rm -rf "$OUT/client-reports"
    (cd "$OUT" && exec timeout 1500 "$HERE/wstest.sh" -m fuzzingserver -s "$OUT/fuzzingserver.json" >"$OUT/wstest-server.log" 2>&1) &
    wstest_pid=$!
    local up=no
    for _ in $(seq 1 200); do
        if python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2)' "$port" 2>/dev/null; then
            up=yes; break
        fi
        if ! kill -0 "$wstest_pid" 2>/dev/null; then break; fi
        read -r -t 0.05 <> <(:) || true
    done
    if [[ "$up" != yes ]]; then
        echo "fuzzingserver did not start; last lines of its log:" >&2
        tail -n 30 "$OUT/wstest-server.log" >&2
        return 1
    fi
    echo "autobahn: examples/autobahn_client against fuzzingserver ws://127.0.0.1:$port, cases ${cases[*]}"
    timeout 1500 "$ROOT/target/release/examples/autobahn_client" "ws://127.0.0.1:$port" switchboard \
        >"$OUT/client.out" 2>"$OUT/client.log" || {
        echo "the agent failed:" >&2
        tail -n 20 "$OUT/client.log" >&2
        return 1
    }
    if grep -q panicked "$OUT/client.log"; then
        echo "the agent panicked:" >&2
        grep -A3 panicked "$OUT/client.log" | head -n 20 >&2
        return 1
    fi
    echo "autobahn, client role:"
    python3 "$HERE/summarize.py" "$OUT/client-reports/index.json"
}

cases_json="$(printf '"%s",' "${cases[@]}")"
status=0
for role in $roles; do
    case "$role" in
        server) run_server_role || status=1 ;;
        client) run_client_role || status=1 ;;
        *) echo "unknown role $role" >&2; exit 2 ;;
    esac
done
exit "$status"
