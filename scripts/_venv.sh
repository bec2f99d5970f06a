# Sourced by serve.sh and test.sh: make (or reuse) the virtual environment and install
# murano into it with the exact versions of requirements.lock (scripts/lock.sh makes it).
# TORCH_SPEC overrides the pinned PyTorch (e.g. a CUDA build on a GPU box).
#
# The install runs only when pyproject.toml, requirements.lock, TORCH_SPEC or the extras
# changed since the last one (a hash in $VENV/.murano-installed*), so a restart costs
# nothing and needs no package index. MURANO_REINSTALL=1 forces it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${MURANO_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${MURANO_EXTRAS:-}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
_wanted="$( (cat pyproject.toml requirements.lock; echo "$TORCH_SPEC") | sha256sum | cut -d' ' -f1)"
_stamp="$VENV/.murano-installed$EXTRAS"
_installed() {
  # What was installed for these extras, or for [dev], which includes everything.
  for stamp in "$_stamp" "$VENV/.murano-installed[dev]"; do
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$_wanted" ] && return 0
  done
  return 1
}
if [ "${MURANO_REINSTALL:-0}" = 1 ] || ! _installed; then
  echo "Installing murano$EXTRAS into $VENV (pyproject.toml or requirements.lock changed)" >&2
  read -ra _torch <<< "$TORCH_SPEC"  # may carry pip options: "torch==2.13.0 --index-url URL"
  "$VENV/bin/python" -m pip install --quiet "${_torch[@]}"
  "$VENV/bin/python" -m pip install --quiet -c requirements.lock -e ".$EXTRAS"
  echo "$_wanted" > "$_stamp"
fi
