# Sourced by test.sh and demo.sh from the repository root: creates .venv with
# $PYTHON (default python3) if it is missing, then installs aioudf into it,
# editable, with its development extras.
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
