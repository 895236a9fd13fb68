#!/usr/bin/env bash
# Install Autobahn|Testsuite (wstest, Python 2.7 only) into $ROOT/.cache/autobahn/prefix.
# Idempotent: skips the install when the marker matches requirements-py27.txt
# and the packages import. Run tests/autobahn/wstest.sh afterwards.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${AUTOBAHN_PYTHON:-/root/.pyenv/versions/2.7.18/bin/python}"
PREFIX="$ROOT/.cache/autobahn/prefix"
REQS="$HERE/requirements-py27.txt"
MARKER="$PREFIX/.installed"

if [[ ! -x "$PY" ]]; then
    echo "error: Python 2.7 not found at $PY" >&2
    echo "       install it with 'pyenv install 2.7.18' or set AUTOBAHN_PYTHON" >&2
    exit 1
fi

SITE="$("$PY" -c 'import sys; sys.stdout.write("lib/python%d.%d/site-packages" % sys.version_info[:2])')"
SITE="$PREFIX/$SITE"
STAMP="$(cksum <"$REQS")"
CHECK="import site; site.addsitedir('$SITE'); import autobahntestsuite.wstest, twisted, autobahn"

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$STAMP" ]] && "$PY" -c "$CHECK" 2>/dev/null; then
    echo "autobahn testsuite already installed in $PREFIX"
    exit 0
fi

echo "installing autobahn testsuite into $PREFIX"
rm -rf "$PREFIX"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore::DeprecationWarning
pip_install() { "$PY" -m pip install --quiet --no-warn-script-location --prefix "$PREFIX" --no-deps "$@"; }

# The base interpreter may lack setuptools; sdists (autobahn, txaio, wsaccel) build with the prefix's copy.
pip_install $(grep -E '^(setuptools|wheel)==' "$REQS" | cut -d' ' -f1)
PYTHONPATH="$SITE" pip_install --no-build-isolation -r "$REQS"

"$PY" -c "$CHECK"
echo "$STAMP" >"$MARKER"
echo "done: run $HERE/wstest.sh"
