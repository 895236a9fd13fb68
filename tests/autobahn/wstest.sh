#!/usr/bin/env bash
# Run Autobahn|Testsuite's wstest (installed by install.sh); all arguments are passed through.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${AUTOBAHN_PYTHON:-/root/.pyenv/versions/2.7.18/bin/python}"
SITE="$ROOT/.cache/autobahn/prefix/lib/python2.7/site-packages"

if [[ ! -x "$PY" || ! -d "$SITE" ]]; then
    echo "error: wstest is not installed; run $HERE/install.sh first" >&2
    exit 1
fi

# Same as the package's console script `wstest = autobahntestsuite.wstest:run`.
exec "$PY" -c 'import site, sys; site.addsitedir(sys.argv[1]); sys.argv = ["wstest"] + sys.argv[2:]
from autobahntestsuite.wstest import run; run()' "$SITE" "$@"
