#!/usr/bin/env bash
# Run the test suite from a fresh clone: creates .venv (if missing), installs
# aioudf with its development extras, then runs pytest. Extra arguments go to
# pytest, e.g. `bash scripts/test.sh -k keepalive -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec .venv/bin/python -m pytest "$@"
