#!/usr/bin/env bash
# Browser test: headless Chromium (Debian's `chromium` package) loads the demo page
# that `switchboard echo` serves and exchanges events with it through client.js, and a
# page written for the earlier broker against `switchboard broker` and a PHP back end.
# .ci/run installs chromium when it is missing.
#
# Usage: tests/browser/run.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [[ -z "$CHROMIUM" ]]; then
    echo "browser: chromium is missing; install it with: apt-get install chromium" >&2
    exit 1
fi
(cd "$ROOT" && timeout 1800 cargo build --release --quiet)
timeout 300 python3 "$HERE/test_browser.py" "$ROOT/target/release/switchboard" "$CHROMIUM"
# client.js's recovery after a reconnection, in Node with a stand-in WebSocket.
timeout 60 node "$HERE/client_recover.js"
