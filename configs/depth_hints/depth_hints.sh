#!/usr/bin/env bash
# Depth Hints entry points.
#
#   bash configs/depth_hints/depth_hints.sh demo     [options]   # fresh machine -> trained + evaluated model
#   bash configs/depth_hints/depth_hints.sh hints    [options]   # precompute fused SGM hints (1024x320)
#   bash configs/depth_hints/depth_hints.sh pretrain [options]   # 640x192 + hints (recipe <recipe>_640x192.yaml)
#   bash configs/depth_hints/depth_hints.sh finetune [options]   # 1024x320 from the pretrain weights (<recipe>_1024x320.yaml)
#   bash configs/depth_hints/depth_hints.sh eval     [options]   # both resolutions, stereo and mono evaluation
#
# Options (each also readable from the environment variable in capitals):
#   --data_path P    KITTI raw root                       (DATA_PATH, default ./kitti_data)
#   --hint_path P    depth hints folder                   (HINT_PATH, default <data_path>/depth_hints)
#   --log_dir P      where models and logs go             (LOG_DIR,   default ./logs)
#   --gpu ID         GPU id; "cpu" forces CPU             (GPU,       default 0; CPU used when no GPU)
#   --recipe R       s (stereo, the paper's S rows) or ms (mono + stereo)   (RECIPE, default s)
#   --num_layers N   ResNet depth (18 or 50)              (NUM_LAYERS, default 18)
#   --num_workers N  data-loading / precompute workers    (NUM_WORKERS, default: number of cores)
# Demo only (tools/demo.sh):
#   --out P          demo output folder                   (OUT, default ./demo_out)
#   --steps N        training steps                       (DEMO_STEPS, default 200)
#   --frames N       frames per synthetic drive           (DEMO_FRAMES, default 60)
#   --overwrite      train in logs/demo again instead of a fresh logs/demo_<N> on a rerun
# Anything after "--" is passed on unchanged: to precompute_depth_hints.py (hints), train.py
# (pretrain, finetune; the demo's two training runs), evaluate_depth.py (each eval run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cmd="${1:-help}"; shift || true

DATA_PATH="${DATA_PATH:-$ROOT/kitti_data}"
HINT_PATH="${HINT_PATH:-}"
LOG_DIR="${LOG_DIR:-$ROOT/logs}"
GPU="${GPU:-0}"
NUM_LAYERS="${NUM_LAYERS:-18}"
RECIPE="${RECIPE:-s}"
NUM_WORKERS="${NUM_WORKERS:-$(nproc 2>/dev/null || echo 2)}"
OUT="${OUT:-$ROOT/demo_out}"
DEMO_ARGS=()
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data_path|--hint_path|--log_dir|--gpu|--num_layers|--recipe|--num_workers|--out|--steps|--frames)
      [ $# -ge 2 ] || { echo "error: $1 needs a value (see: bash $0 help)" >&2; exit 2; } ;;
  esac
  case "$1" in
    --data_path) DATA_PATH="$2"; shift 2 ;;
    --hint_path) HINT_PATH="$2"; shift 2 ;;
    --log_dir) LOG_DIR="$2"; shift 2 ;;
    --gpu) GPU="$2"; shift 2 ;;
    --num_layers) NUM_LAYERS="$2"; shift 2 ;;
    --recipe) RECIPE="$2"; shift 2 ;;
    --num_workers) NUM_WORKERS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --steps|--frames) DEMO_ARGS+=("$1" "$2"); shift 2 ;;
    --overwrite) DEMO_ARGS+=("$1"); shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) cmd=help; shift ;;
    *) echo "error: unknown option '$1' for depth_hints.sh (see: bash $0 help)" >&2; exit 2 ;;
  esac
done
HINT_PATH="${HINT_PATH:-$DATA_PATH/depth_hints}"
if [ ${#DEMO_ARGS[@]} -gt 0 ] && [ "$cmd" != demo ]; then
  echo "error: ${DEMO_ARGS[0]} is a demo option, not one of '$cmd' (see: bash $0 help)" >&2; exit 2
fi
case "$RECIPE" in
  s|ms) ;;
  *) echo "error: unknown recipe '$RECIPE' (--recipe): use s or ms" >&2; exit 2 ;;
esac
CFG="$ROOT/configs/depth_hints"

if [ "$GPU" = "cpu" ]; then DEVICE=cpu; else DEVICE=auto; export CUDA_VISIBLE_DEVICES="$GPU"; fi
PY="$ROOT/.venv/bin/python"
setup() { bash "$ROOT/tools/setup_env.sh"; }
need_data() {
  if [ ! -d "$DATA_PATH" ]; then
    echo "error: KITTI data not found (--data_path $DATA_PATH): download and unpack KITTI raw as in README.md, or pass --data_path" >&2
    exit 2
  fi
}
source "$ROOT/tools/lib.sh"  # last_weights

PRE_NAME="depth_hints_${RECIPE}_r${NUM_LAYERS}_640x192"
FT_NAME="depth_hints_${RECIPE}_r${NUM_LAYERS}_1024x320"

case "$cmd" in
  hints)
    setup; need_data
    cd "$ROOT"
    "$PY" precompute_depth_hints.py --data_path "$DATA_PATH" --save_path "$HINT_PATH" \
      --filenames splits/eigen_full/all_files.txt --height 320 --width 1024 \
      --num_workers "$NUM_WORKERS" "${EXTRA[@]}"
    ;;
  pretrain)
    setup; need_data
    cd "$ROOT"
    "$PY" train.py --config "$CFG/${RECIPE}_640x192.yaml" --data_path "$DATA_PATH" --log_dir "$LOG_DIR" \
      --model_name "$PRE_NAME" --depth_hint_path "$HINT_PATH" --num_layers "$NUM_LAYERS" \
      --num_workers "$NUM_WORKERS" --device "$DEVICE" "${EXTRA[@]}"
    ;;
  finetune)
    setup; need_data
    cd "$ROOT"
    W="$(last_weights "$LOG_DIR/$PRE_NAME")"
    [ -n "$W" ] || { echo "error: no pretrain weights under $LOG_DIR/$PRE_NAME/models: run 'depth_hints.sh pretrain' first" >&2; exit 2; }
    "$PY" train.py --config "$CFG/${RECIPE}_1024x320.yaml" --data_path "$DATA_PATH" --log_dir "$LOG_DIR" \
      --model_name "$FT_NAME" --depth_hint_path "$HINT_PATH" --num_layers "$NUM_LAYERS" \
      --load_weights_folder "$W" --num_workers "$NUM_WORKERS" --device "$DEVICE" "${EXTRA[@]}"
    ;;
  eval)
    setup; need_data
    cd "$ROOT"
    for name in "$PRE_NAME" "$FT_NAME"; do
      W="$(last_weights "$LOG_DIR/$name")"
      if [ -z "$W" ]; then echo "[eval] skip $name: no weights under $LOG_DIR/$name/models"; continue; fi
      for mode in --eval_stereo --eval_mono; do
        echo "[eval] $name $mode ($W)"
        "$PY" evaluate_depth.py --load_weights_folder "$W" --data_path "$DATA_PATH" \
          --eval_split eigen $mode --num_layers "$NUM_LAYERS" --device "$DEVICE" "${EXTRA[@]}"
      done
    done
    ;;
  demo)
    exec bash "$ROOT/tools/demo.sh" --out "$OUT" --num_workers "$NUM_WORKERS" "${DEMO_ARGS[@]}" -- "${EXTRA[@]}"
    ;;
  help|*)
    awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || { echo "error: unknown sub-command '$cmd'" >&2; exit 2; }
    ;;
esac
