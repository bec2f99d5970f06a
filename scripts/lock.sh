#!/usr/bin/env bash
# Regenerate requirements.lock: the exact version of every package murano (with its dev
# extra) needs, read from a virtual environment the test suite passed in (default .venv,
# or MURANO_VENV). Offline: nothing is downloaded or resolved, the lock is what is installed.
# torch is left out: the scripts install it from TORCH_SPEC (default torch==2.13.0).
#
# Upgrading: .venv/bin/pip install --upgrade --upgrade-strategy eager -e ".[dev]"
#            ./scripts/lock.sh && ./scripts/test.sh      # then commit requirements.lock
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${MURANO_VENV:-.venv}"
"$VENV/bin/python" scripts/_lock.py pyproject.toml > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) packages pinned from $VENV" >&2
