#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv: PaddlePaddle, then requirements.txt.
# Needs only python3. Idempotent and quick when nothing changed (the entry scripts call it every time).
#
#   bash tools/setup_env.sh [--dry-run]            # CPU build of Paddle 3.x from PyPI (default)
#   PADDLE=cu126 bash tools/setup_env.sh           # GPU build for CUDA 12.6 from Paddle's index
#
# PADDLE=cpu|cu118|cu126|cu129 picks the Paddle build (tools/paddle_setup.py). A Paddle 3.x that
# already imports (CPU or GPU, e.g. installed by hand) is never replaced; a missing Paddle or a
# Paddle 2.x is. PADDLE_FORCE=1 replaces a working one too. Paddle is not in requirements.txt,
# so installing the requirements never touches it; they are re-installed only when
# requirements.txt changed (stamp .venv/.requirements.sha). DRY_RUN=1 or --dry-run prints what
# would be installed and changes nothing. VENV=DIR and PYTHON=python3.x override the defaults.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
DRY_RUN="${DRY_RUN:-0}"
FORCE="${PADDLE_FORCE:-0}"
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option '$arg' (tools/setup_env.sh): use --dry-run, or set PADDLE=cpu|cu118|cu126|cu129" >&2; exit 2 ;;
  esac
done
case "$DRY_RUN" in ""|0|no|false) DRY_RUN=0 ;; *) DRY_RUN=1 ;; esac
case "$FORCE" in ""|0|no|false) FORCE=0 ;; *) FORCE=1 ;; esac
if [ "$DRY_RUN" = 1 ]; then TAG="[setup] dry run:"; else TAG="[setup]"; fi

if [ ! -x "$VENV/bin/python" ]; then
  if [ "$DRY_RUN" = 1 ]; then
    echo "$TAG would create a virtual environment in $VENV ($PY -m venv) and upgrade its pip"
  else
    echo "[setup] creating virtual environment in $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
fi

# Paddle: decided and installed by the helper (stdlib only, so any python3 can run it).
HELPER_PY="$VENV/bin/python"; [ -x "$HELPER_PY" ] || HELPER_PY="$PY"
PADDLE_ARGS=(--python "$VENV/bin/python" --stamp "$VENV/.paddle.stamp")
[ -z "${PADDLE:-}" ] || PADDLE_ARGS+=(--build "$PADDLE")
[ "$FORCE" = "0" ] || PADDLE_ARGS+=(--force)
[ "$DRY_RUN" = 0 ] || PADDLE_ARGS+=(--dry-run)
"$HELPER_PY" "$ROOT/tools/paddle_setup.py" "${PADDLE_ARGS[@]}"

# Everything else: requirements.txt (no Paddle in it), re-installed when the file changed.
STAMP="$VENV/.requirements.sha"
WANT="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  if [ "$DRY_RUN" = 1 ]; then
    echo "$TAG would run: $VENV/bin/python -m pip install -r $ROOT/requirements.txt"
  else
    echo "[setup] installing requirements.txt (first run takes a few minutes)"
    "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt"
    echo "$WANT" > "$STAMP"
  fi
elif [ "$DRY_RUN" = 1 ]; then
  echo "$TAG requirements.txt unchanged since the last install: nothing to install"
fi
