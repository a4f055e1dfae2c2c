#!/usr/bin/env bash
# Build the sdist and the wheel as a release would, check their metadata
# with twine, install the wheel into a fresh virtual environment (nothing of
# the checkout on its path) and run the examples from it:
#   - with the base install, a batch recording through examples/outliers.py,
#     and a stream recording refused with the name of the extra it needs;
#   - with the replay extra, the demo's stream recording through
#     examples/moving_avg.py as a process UDF.
# Run by CI (.ci/run) after the tests; needs .venv (scripts/test.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d -t aioudf-package.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --no-isolation: hatchling comes with the dev extra, no build env to set up
.venv/bin/python -m build --no-isolation --outdir "$work/dist" . > "$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
.venv/bin/python -m twine check --strict "$work"/dist/*
wheel=$(ls "$work"/dist/aioudf-*.whl)
ls "$work"/dist/aioudf-*.tar.gz > /dev/null

python=${PYTHON:-python3}
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" "$wheel"

# Run from an empty directory: nothing imports from the checkout.
mkdir "$work/run" && cd "$work/run"
repo=$OLDPWD
aioudf=$work/venv/bin/aioudf

"$aioudf" --version
"$aioudf" replay "$repo/examples/outliers.py:Outliers" "$repo/tests/data/cpu_batch.brpl" \
    --option field=value --option scale=1.5 --quiet --output out.lp
test -s out.lp

if "$aioudf" replay "$repo/examples/moving_avg.py:MovingAvg" "$repo/tests/data/cpu_stream.srpl" \
    --option field=usage_idle --quiet 2> refused.txt; then
    echo "check_package: a stream recording replayed without the replay extra" >&2
    exit 1
fi
grep -q 'aioudf\[replay\]' refused.txt || { cat refused.txt; exit 1; }

"${pip[@]}" "$wheel[replay]"
"$aioudf" replay --cmd "$work/venv/bin/python -u $repo/examples/moving_avg.py" \
    "$repo/tests/data/cpu_stream.srpl" \
    --option field=usage_idle --option size=10 --option as=avg --group-by host \
    --quiet --output avg.lp
test "$(wc -l < avg.lp)" -gt 0
echo "check_package: sdist and wheel built, twine check passed, the wheel runs the examples"
