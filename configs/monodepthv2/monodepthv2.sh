#!/usr/bin/env bash
# Plain Monodepth2 training (no depth hints), the baselines Depth Hints builds on.
#
#   bash configs/monodepthv2/monodepthv2.sh s    [options]   # stereo only (S):   --use_stereo --frame_ids 0, eigen_full
#   bash configs/monodepthv2/monodepthv2.sh m    [options]   # mono video (M):    --frame_ids 0 -1 1, eigen_zhou
#   bash configs/monodepthv2/monodepthv2.sh ms   [options]   # mono + stereo (MS): --use_stereo --frame_ids 0 -1 1, eigen_zhou
#   bash configs/monodepthv2/monodepthv2.sh eval [options]   # evaluate the newest weights of each (S/MS stereo, M mono)
#
# Options (or the environment variable in capitals): --data_path (DATA_PATH, ./kitti_data),
#   --log_dir (LOG_DIR, ./logs), --gpu ID|cpu (GPU, 0), --num_layers (NUM_LAYERS, 18),
#   --num_workers (NUM_WORKERS, cores). Anything after "--" goes to the Python command.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cmd="${1:-help}"; shift || true
DATA_PATH="${DATA_PATH:-$ROOT/kitti_data}"; LOG_DIR="${LOG_DIR:-$ROOT/logs}"; GPU="${GPU:-0}"
NUM_LAYERS="${NUM_LAYERS:-18}"; NUM_WORKERS="${NUM_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data_path) DATA_PATH="$2"; shift 2 ;;
    --log_dir) LOG_DIR="$2"; shift 2 ;;
    --gpu) GPU="$2"; shift 2 ;;
    --num_layers) NUM_LAYERS="$2"; shift 2 ;;
    --num_workers) NUM_WORKERS="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) cmd=help; shift ;;
    *) echo "error: unknown option '$1' for monodepthv2.sh (see: bash $0 help)" >&2; exit 2 ;;
  esac
done
if [ "$GPU" = "cpu" ]; then DEVICE=cpu; else DEVICE=auto; export CUDA_VISIBLE_DEVICES="$GPU"; fi
PY="$ROOT/.venv/bin/python"
source "$ROOT/tools/lib.sh"  # last_weights
train() {  # name, then the mode's flags
  local name="$1"; shift
  bash "$ROOT/tools/setup_env.sh"
  [ -d "$DATA_PATH" ] || { echo "error: KITTI data not found (--data_path $DATA_PATH): see README.md, KITTI preparation" >&2; exit 2; }
  cd "$ROOT"
  "$PY" train.py --data_path "$DATA_PATH" --log_dir "$LOG_DIR" --model_name "$name" \
    --num_layers "$NUM_LAYERS" --height 192 --width 640 --num_workers "$NUM_WORKERS" --device "$DEVICE" \
    "$@" "${EXTRA[@]}"
}
case "$cmd" in
  s)  train "mono2_s_r${NUM_LAYERS}"  --use_stereo --frame_ids 0 --split eigen_full ;;
  m)  train "mono2_m_r${NUM_LAYERS}"  --frame_ids 0 -1 1 --split eigen_zhou ;;
  ms) train "mono2_ms_r${NUM_LAYERS}" --use_stereo --frame_ids 0 -1 1 --split eigen_zhou ;;
  eval)
    bash "$ROOT/tools/setup_env.sh"; cd "$ROOT"
    for pair in "s:--eval_stereo" "ms:--eval_stereo" "m:--eval_mono" "ms:--eval_mono"; do
      name="mono2_${pair%%:*}_r${NUM_LAYERS}"; mode="${pair#*:}"
      W="$(last_weights "$LOG_DIR/$name")"
      [ -n "$W" ] || { echo "[eval] skip $name: no weights under $LOG_DIR/$name/models"; continue; }
      echo "[eval] $name $mode ($W)"
      "$PY" evaluate_depth.py --load_weights_folder "$W" --data_path "$DATA_PATH" --eval_split eigen \
        $mode --num_layers "$NUM_LAYERS" --device "$DEVICE" "${EXTRA[@]}"
    done ;;
  help|*)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || { echo "error: unknown sub-command '$cmd'" >&2; exit 2; } ;;
esac
