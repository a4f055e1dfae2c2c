# Sourced by test.sh, demo.sh and check_package.sh from the repository root:
# creates .venv with $PYTHON (default python3) if it is missing, and installs
# aioudf into it, editable, with its development extras, unless that was
# already done for the current pyproject.toml (the source itself is
# editable: changes to it need no reinstall).
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
_stamp=.venv/.aioudf-installed
_wanted=$(.venv/bin/python -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')
if [ ! -x .venv/bin/aioudf ] || [ "$(cat "$_stamp" 2>/dev/null)" != "$_wanted" ]; then
    echo "installing aioudf and its development extras into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
    echo "$_wanted" > "$_stamp"
fi
unset _stamp _wanted
