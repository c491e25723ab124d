"""Every model/loss variant of the trainer runs a step with finite losses (tiny resolution),
and data-parallel training with two CPU processes (paddle.distributed.launch, gloo)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from options import MonodepthOptions, validate_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def args_for(data, hints, log_dir, extra):
    return ["--data_path", data, "--split", os.path.join(data, "splits", "synthetic"), "--height", "64",
            "--width", "192", "--batch_size", "2", "--weights_init", "scratch", "--log_dir", str(log_dir),
            "--num_workers", "0", "--device", "cpu", "--max_steps", "1", "--depth_hint_path", hints] + extra


VARIANTS = {
    "MS_hints_separate": ["--use_stereo", "--use_depth_hints"],
    "M_shared_all": ["--pose_model_type", "shared", "--pose_model_input", "all"],
    "M_posecnn_avg": ["--pose_model_type", "posecnn", "--avg_reprojection"],
    "S_hints_no_automask": ["--use_stereo", "--frame_ids", "0", "--use_depth_hints", "--disable_automasking"],
    "M_predictive_mask": ["--predictive_mask", "--disable_automasking", "--no_ssim"],
    "S_v1_multiscale_scales2": ["--use_stereo", "--frame_ids", "0", "--v1_multiscale", "--scales", "0", "1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_runs(synthetic_kitti, hints_dir, loss_recorder, tmp_path, name):
    from trainer import Trainer
    opt = MonodepthOptions().parse(args_for(synthetic_kitti, hints_dir, tmp_path, VARIANTS[name]))
    validate_options(opt)
    tr = Trainer(opt)
    rec = loss_recorder(tr)
    assert tr.train() == 1
    row = rec.rows[0]
    assert np.isfinite(row["loss"]) and row["loss"] > 0
    n = len(opt.scales)
    assert row["loss"] == pytest.approx(sum(row[("loss", s)] for s in range(n)) / n, rel=1e-5)
    saved = sorted(os.listdir(tmp_path / "mdp" / "models" / "weights_last"))
    if opt.frame_ids != [0]:
        assert "pose.pdparams" in saved
        assert ("pose_encoder.pdparams" in saved) == (opt.pose_model_type == "separate_resnet")
    if opt.use_depth_hints:
        assert all(0 < row[("hint_won", s)] < 1 for s in range(n))
        assert all(row[("hint", s)] > 0 for s in range(n))


@pytest.mark.slow
def test_data_parallel_two_cpu_processes(synthetic_kitti, hints_dir, tmp_path):
    """`python -m paddle.distributed.launch --nproc_per_node 2 train.py ...` on CPU (gloo):
    rank 0 alone saves; the trainer checks at the end that both ranks hold the same weights."""
    args = args_for(synthetic_kitti, hints_dir, tmp_path / "log",
                    ["--use_stereo", "--frame_ids", "0", "--use_depth_hints", "--max_steps", "3"])
    args[args.index("--batch_size") + 1] = "1"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    r = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                        "--log_dir", str(tmp_path / "launch"), os.path.join(ROOT, "train.py")] + args,
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    logs = {f: open(tmp_path / "launch" / f).read() for f in os.listdir(tmp_path / "launch")}
    assert r.returncode == 0, (r.stderr[-1500:], {k: v[-1500:] for k, v in logs.items()})
    from checkpoint import load_trainer_state
    st = load_trainer_state(str(tmp_path / "log" / "mdp" / "models" / "weights_last" / "trainer_state.json"))
    assert st["step"] == 3 and st["world_size"] == 2
    # 11 samples / 2 ranks -> 6 per rank -> 6 steps per epoch at batch 1
    assert st["batch_in_epoch"] == 3
