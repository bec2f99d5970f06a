#!/usr/bin/env bash
# Command 2 of the README: install murano with its dev tools, then lint, type-check and run
# the whole test suite (PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 are used).
set -euo pipefail
MURANO_EXTRAS="[dev]"
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
# spandrel without torchvision (PyPI has none for a CPU torch); the tests stand in for it.
"$VENV/bin/python" -m pip install --quiet --no-deps "spandrel==0.4.2"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
"$VENV/bin/ruff" check murano tests benchmarks
"$VENV/bin/ruff" format --check murano tests benchmarks
"$VENV/bin/mypy" murano
exec "$VENV/bin/pytest" -q "$@"
