#!/usr/bin/env bash
# Run the test suite from a fresh clone: creates .venv (if missing), installs
# aioudf with its development extras, then runs pytest on every CPU, the tests
# of a file in one worker (their module fixtures made once). Extra arguments
# go to pytest, e.g. `bash scripts/test.sh -k keepalive -x`; `-n0` runs them
# all in this process (for --pdb or -s).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec .venv/bin/python -m pytest -n auto --dist loadfile "$@"
