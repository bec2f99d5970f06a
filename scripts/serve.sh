#!/usr/bin/env bash
# Command 1 of the README: install murano (only when pyproject.toml or requirements.lock
# changed) and start the server on the embedded model, on 127.0.0.1:8000, with the
# playground at http://127.0.0.1:8000/. Extra arguments go to `murano serve` (e.g. --no-auth,
# --port 9000).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
export HF_HUB_DISABLE_TELEMETRY=1
# Keep glibc from returning every large buffer to the OS between VAE decodes: about 3x
# faster decoding on CPU, for a resident set that stays at its high-water mark.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=4294967295}"
case ":$PATH:" in
  *":$(cd "$VENV/bin" && pwd):"*) ;;
  *) echo "The murano command is in $VENV/bin; in another shell: source $VENV/bin/activate" >&2 ;;
esac
exec "$VENV/bin/murano" serve "$@"
