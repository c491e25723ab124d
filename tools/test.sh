#!/usr/bin/env bash
# Run the whole test suite: sets up .venv (tools/setup_env.sh) then runs pytest.
# Extra arguments go to pytest, e.g. `bash tools/test.sh -k layers`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
exec "${VENV:-$ROOT/.venv}/bin/python" -m pytest -q tests "$@"
