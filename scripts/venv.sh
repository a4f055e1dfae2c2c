# Sourced by test.sh, demo.sh and check_package.sh from the repository root:
# creates the virtual environment $VENV (default .venv) with $PYTHON (default
# python3) if it is missing, and installs aioudf into it, editable, with the
# extras $EXTRAS (default: dev, the development extras, which hold every other
# extra's packages), unless that was already done for the current
# pyproject.toml (the source itself is editable: changes to it need no
# reinstall). An environment with the dev extras serves every caller; one
# with fewer (what demo.sh installs) is topped up when more is asked for.
python=${PYTHON:-python3}
venv=${VENV:-.venv}
_extras=${EXTRAS-dev}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
_stamp=$venv/.aioudf-installed
_hash=$("$venv/bin/python" -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
_have=$(cat "$_stamp" 2>/dev/null || true)
[ "$_have" = "$_hash" ] && _have="$_hash dev"  # the stamp of older versions of this script
if [ ! -x "$venv/bin/aioudf" ] || { [ "$_have" != "$_hash dev" ] && [ "$_have" != "$_hash $_extras" ]; }; then
    echo "installing aioudf${_extras:+ [$_extras]} into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".${_extras:+[$_extras]}"
    echo "$_hash $_extras" > "$_stamp"
fi
unset _stamp _hash _have _extras
