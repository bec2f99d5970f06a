# Sourced by serve.sh and test.sh: make (or reuse) the virtual environment and install
# murano into it. TORCH_SPEC overrides the pinned PyTorch (e.g. a CUDA build on a GPU box).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${MURANO_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
"$VENV/bin/python" -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
"$VENV/bin/python" -m pip install --quiet -e ".${MURANO_EXTRAS:-}"
