#!/usr/bin/env bash
# Run the test suite from a fresh clone: creates .venv (if missing), installs
# aioudf with its development extras, then runs pytest. Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -k keepalive -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
exec .venv/bin/python -m pytest "$@"
