#!/usr/bin/env bash
# aioudf end to end on a fresh machine, no Kapacitor needed: creates .venv and
# installs aioudf with what the demo needs, the [replay] extra (only if not
# done yet; not the development extras, which scripts/test.sh adds), then replays a real Kapacitor stream recording
# (tests/data/cpu_stream.srpl, 897 cpu points from 3 hosts) through
# examples/moving_avg.py, started as a process UDF exactly as Kapacitor starts
# it (python -u moving_avg.py, frames on stdin/stdout), grouped by host as
# |from().groupBy('host') would group it. Prints the first moving averages and
# the summary. The full output goes to $OUT if set (else to a temporary file,
# removed at exit).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=replay source scripts/venv.sh

if [ -n "${OUT:-}" ]; then
    out=$OUT
else
    out=$(mktemp -t aioudf-demo.XXXXXX)
    trap 'rm -f "$out"' EXIT
fi
echo "\$ aioudf replay --cmd '$venv/bin/python -u examples/moving_avg.py' tests/data/cpu_stream.srpl \\"
echo "      --option field=usage_idle --option size=10 --option as=avg --group-by host"
"$venv/bin/aioudf" replay \
    --cmd "$venv/bin/python -u examples/moving_avg.py" \
    tests/data/cpu_stream.srpl \
    --option field=usage_idle --option size=10 --option as=avg \
    --group-by host \
    --output "$out"
echo
echo "First moving averages (line protocol), of $(wc -l < "$out")${OUT:+ in $OUT}:"
head -n 9 "$out"
