#!/usr/bin/env bash
# Run the test suite: sets up .venv (tools/setup_env.sh) then runs pytest.
#   bash tools/test.sh                          # the whole suite (tests/)
#   bash tools/test.sh tests/test_layers.py     # only these files / folders / node ids
#   bash tools/test.sh -k layers                # extra arguments go to pytest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"
# the whole suite unless a test path is given (an argument that is, up to any ::, a file or folder)
targets=(tests)
prev=""
for a in "$@"; do
    case "$prev" in -k|-m|-p|-o|--deselect|--ignore|--rootdir|-c) prev="$a"; continue ;; esac
    case "$a" in -*) ;; *) if [ -e "${a%%::*}" ]; then targets=(); fi ;; esac
    prev="$a"
done
exec "${VENV:-$ROOT/.venv}/bin/python" -m pytest -q "${targets[@]}" "$@"
