#!/usr/bin/env bash
# One-command demo on built-in synthetic KITTI-layout data (CPU is enough, ~10 minutes on 2 cores):
# environment -> synthetic data -> fused SGM depth hints -> training with --use_depth_hints ->
# ground-truth export -> evaluation (untrained baseline vs trained) -> colour-mapped predictions.
#
#   bash tools/demo.sh [--out DIR] [--num_workers N] [--steps N] [--frames N] [--overwrite] [-- TRAIN_FLAGS]
# (--steps: training steps, default 200; --frames: frames per synthetic drive, default 60)
# Usually started as `bash configs/depth_hints/depth_hints.sh demo`.
#
# Run again, the demo reuses the data and the hints of DIR and trains in a fresh run folder of
# its own: DIR/logs/demo and DIR/logs/untrained the first time, then demo_2 and untrained_2,
# demo_3 ... (printed at step 4; earlier runs are kept). --overwrite trains in demo and
# untrained again instead (train.py --overwrite: their checkpoints are deleted). The metrics,
# test images and predictions in DIR are those of the latest run. Flags after "--" go to both
# train.py runs of step 4 (the baseline's --max_steps 0 stays), e.g. -- --batch_size 8.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/demo_out"
NUM_WORKERS="$(nproc 2>/dev/null || echo 2)"
STEPS="${DEMO_STEPS:-200}"
FRAMES="${DEMO_FRAMES:-60}"
OVERWRITE=0
TRAIN_EXTRA=()
usage="use --out DIR, --num_workers N, --steps N, --frames N, --overwrite, then -- and train.py flags"
while [ $# -gt 0 ]; do
  case "$1" in
    --out|--num_workers|--steps|--frames)
      [ $# -ge 2 ] || { echo "error: $1 needs a value for demo ($usage)" >&2; exit 2; }
      case "$1" in
        --out) OUT="$2" ;; --num_workers) NUM_WORKERS="$2" ;; --steps) STEPS="$2" ;; --frames) FRAMES="$2" ;;
      esac
      shift 2 ;;
    --overwrite) OVERWRITE=1; shift ;;
    --) shift; TRAIN_EXTRA=("$@"); break ;;
    *) echo "error: unknown option '$1' for demo ($usage)" >&2; exit 2 ;;
  esac
done
for pair in "--num_workers:$NUM_WORKERS" "--steps:$STEPS" "--frames:$FRAMES"; do
  case "${pair#*:}" in
    ''|*[!0-9]*) echo "error: ${pair%%:*} must be a whole number for demo, got '${pair#*:}'" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
DATA="$OUT/synthetic_kitti"
LOGS="$OUT/logs"
SPLITS="$DATA/splits"
PY="$ROOT/.venv/bin/python"
H=96; W=320
t0=$(date +%s)
step() { echo; echo "=== [demo $(( $(date +%s) - t0 ))s] $*"; }

step "1/7 environment (.venv)"
bash "$ROOT/tools/setup_env.sh"
cd "$ROOT"

step "2/7 synthetic KITTI-layout data -> $DATA"
if [ -f "$DATA/.complete" ]; then echo "reusing $DATA"; else
  "$PY" tools/make_synthetic_kitti.py --out "$DATA" --seed 0 --frames_per_drive "$FRAMES"
  touch "$DATA/.complete"
fi
cat "$SPLITS/synthetic/train_files.txt" "$SPLITS/synthetic/val_files.txt" > "$OUT/all_files.txt"

step "3/7 fused SGM depth hints at ${W}x${H} (the training size) -> $DATA/depth_hints"
"$PY" precompute_depth_hints.py --data_path "$DATA" --filenames "$OUT/all_files.txt" \
  --height $H --width $W --num_workers "$NUM_WORKERS"

# this run's folders: demo + untrained, or the first free demo_N + untrained_N (N >= 2)
RUN=""; n=1
if [ "$OVERWRITE" = 0 ]; then
  while [ -e "$LOGS/demo$RUN" ] || [ -e "$LOGS/untrained$RUN" ]; do n=$((n + 1)); RUN="_$n"; done
fi
NAME="demo$RUN"; BASE="untrained$RUN"
OW=(); [ "$OVERWRITE" = 1 ] && OW=(--overwrite)

step "4/7 train: stereo + depth hints, ResNet18 from scratch, ${W}x${H}, $STEPS steps on CPU -> $LOGS/$NAME"
if [ "$OVERWRITE" = 1 ]; then echo "--overwrite: training again in $LOGS/$NAME and $LOGS/$BASE"
elif [ -n "$RUN" ]; then echo "run $n of this demo folder: a fresh run in $LOGS/$NAME and $LOGS/$BASE (the earlier runs are kept; --overwrite trains in $LOGS/demo again)"; fi
"$PY" train.py --data_path "$DATA" --split "$SPLITS/synthetic" --log_dir "$LOGS" --model_name "$BASE" \
  --use_stereo --frame_ids 0 --use_depth_hints --height $H --width $W --batch_size 4 \
  --weights_init scratch --num_workers 0 --seed 0 --log_frequency 1000 "${OW[@]}" "${TRAIN_EXTRA[@]}" \
  --max_steps 0 > "$OUT/untrained.log" 2>&1 || { cat "$OUT/untrained.log"; exit 1; }
"$PY" train.py --data_path "$DATA" --split "$SPLITS/synthetic" --log_dir "$LOGS" --model_name "$NAME" \
  --use_stereo --frame_ids 0 --use_depth_hints --height $H --width $W --batch_size 4 \
  --disparity_smoothness 0 --scheduler_step_size 1000 --learning_rate 2e-4 \
  --weights_init scratch --max_steps "$STEPS" --num_epochs 1000 --num_workers 1 --seed 0 --log_frequency 25 \
  "${OW[@]}" "${TRAIN_EXTRA[@]}"
source "$ROOT/tools/lib.sh"  # last_weights
WT="$(last_weights "$LOGS/$NAME")"; WU="$(last_weights "$LOGS/$BASE")"

step "5/7 export ground truth (eigen-style split of the held-out drive)"
"$PY" export_gt_depth.py --data_path "$DATA" --split eigen --splits_dir "$SPLITS"

step "6/7 evaluate (stereo: metric scale, no median scaling)"
echo "--- untrained network ($WU)"
"$PY" evaluate_depth.py --load_weights_folder "$WU" --data_path "$DATA" --eval_stereo \
  --eval_split eigen --splits_dir "$SPLITS" --metrics_out "$OUT/metrics_untrained.json"
echo "--- trained network ($WT)"
"$PY" evaluate_depth.py --load_weights_folder "$WT" --data_path "$DATA" --eval_stereo \
  --eval_split eigen --splits_dir "$SPLITS" --metrics_out "$OUT/metrics_trained.json"

step "7/7 colour-mapped predictions for the test drive -> $OUT/predictions"
rm -rf "$OUT/test_images"; mkdir -p "$OUT/test_images"
head -n 4 "$SPLITS/eigen/test_files.txt" | while read -r folder frame side; do
  cp "$DATA/$folder/image_02/data/$(printf %010d "$((10#$frame))").jpg" "$OUT/test_images/$(basename "$folder")_$frame.jpg"
done
"$PY" test_simple.py --image_path "$OUT/test_images" --model_path "$WT" --output_dir "$OUT/predictions" --pred_metric_depth

"$PY" - "$OUT" <<'EOF'
import json, sys, os
out = sys.argv[1]
load = lambda name: json.load(open(os.path.join(out, "metrics_%s.json" % name)))["metrics"]
u, t = load("untrained"), load("trained")
keys = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"]
print("\nEigen-style test drive of %s, stereo evaluation:" % os.path.join(out, "synthetic_kitti"))
print("%-10s" % "model" + "".join("%10s" % k for k in keys))
for name, m in (("untrained", u), ("trained", t)):
    print("%-10s" % name + "".join("%10.3f" % m[k] for k in keys))
better = [k for k in keys if (t[k] > u[k] if k in ("a1", "a2", "a3") else t[k] < u[k])]
print("trained beats untrained on %d of 7 metrics" % len(better))
EOF
step "done in $(( $(date +%s) - t0 ))s. Outputs:"
echo "  data + hints:      $DATA  (hints in $DATA/depth_hints)"
echo "  trained model:     $WT"
echo "  training logs:     $LOGS/$NAME   (view: .venv/bin/visualdl --logdir $LOGS --language en)"
echo "  ground truth:      $SPLITS/eigen/gt_depths.npz"
echo "  metrics (json):    $OUT/metrics_trained.json, $OUT/metrics_untrained.json"
echo "  predictions:       $OUT/predictions"
