#!/usr/bin/env bash
# Runs the Autobahn|Testsuite (fuzzingclient, sections 1-10) against `switchboard echo`
# and fails on any FAILED case. Sections 12 and 13 test permessage-deflate, which is
# not implemented (the server accepts no extension), so they are not run.
#
# Usage: tests/autobahn/run.sh [CASES...]     (default: 1.* 2.* ... 10.*)
# Reports: .cache/autobahn/reports/index.html; summary printed on stdout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$ROOT/.cache/autobahn"
mkdir -p "$OUT"

"$HERE/install.sh"
(cd "$ROOT" && cargo build --release --quiet)

cases=("$@")
if [[ ${#cases[@]} -eq 0 ]]; then
    cases=(1.* 2.* 3.* 4.* 5.* 6.* 7.* 8.* 9.* 10.*)
fi

# Start the server on a free port; its first line says which.
log="$OUT/server.log"
"$ROOT/target/release/switchboard" echo --listen 127.0.0.1:0 >"$OUT/server.out" 2>"$log" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT
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

python3 "$HERE/summarize.py" "$OUT/reports/index.json"
