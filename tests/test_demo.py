"""The README's first command, end to end, at a tiny size: tools/demo.sh must run every stage
(synthetic data -> hints -> train -> gt export -> evaluation -> predictions) and print the
comparison table. The full-size demo is timed by hand (BENCHMARKS.md)."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, DEMO_STEPS="2", DEMO_FRAMES="6")
    r = subprocess.run(["bash", os.path.join(ROOT, "configs", "depth_hints", "depth_hints.sh"), "demo",
                        "--out", str(out), "--num_workers", "1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    for stage in range(1, 8):
        assert "=== [demo" in r.stdout and "%d/7" % stage in r.stdout
    for name in ("untrained", "trained"):
        m = json.load(open(out / ("metrics_%s.json" % name)))
        assert m["mode"] == "stereo" and m["num_images"] == 6
    assert "trained beats untrained on" in r.stdout
    preds = sorted(os.listdir(out / "predictions"))
    assert len([p for p in preds if p.endswith("_disp.png")]) == 4
    assert len([p for p in preds if p.endswith("_depth.npy")]) == 4
    assert (out / "synthetic_kitti" / "splits" / "eigen" / "gt_depths.npz").is_file()


@pytest.mark.slow
def test_depth_hints_sh_hints_pretrain_finetune_eval(synthetic_kitti, tmp_path):
    """The paper-recipe entry points run as written (tiny sizes and 1 step via `-- extra flags`):
    hints -> pretrain (640x192 recipe) -> finetune (from the pretrain weights) -> eval."""
    import shutil
    data = str(tmp_path / "data")
    shutil.copytree(synthetic_kitti, data, ignore=shutil.ignore_patterns("depth_hints", "gt_depths.npz"))
    splits = os.path.join(data, "splits")
    logs = str(tmp_path / "logs")
    script = os.path.join(ROOT, "configs", "depth_hints", "depth_hints.sh")
    common = ["--data_path", data, "--log_dir", logs, "--gpu", "cpu", "--num_workers", "0"]
    small = ["--split", os.path.join(splits, "synthetic"), "--max_steps", "1", "--weights_init", "scratch",
             "--height", "64", "--width", "192", "--batch_size", "2"]

    def sh(*args):
        r = subprocess.run(["bash", script] + list(args), cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-2000:])
        return r.stdout

    all_files = os.path.join(str(tmp_path), "all_files.txt")
    with open(all_files, "w") as f:
        for n in ("train_files.txt", "val_files.txt"):
            f.write(open(os.path.join(splits, "synthetic", n)).read())
    sh("hints", *common, "--", "--filenames", all_files, "--height", "96", "--width", "320")
    sh("pretrain", *common, "--", *small)
    pre = os.path.join(logs, "depth_hints_s_r18_640x192", "models")
    assert os.path.isfile(os.path.join(pre, "weights_last", "encoder.pdparams"))
    sh("finetune", *common, "--", *small)
    ft = os.path.join(logs, "depth_hints_s_r18_1024x320", "models")
    assert os.path.isfile(os.path.join(ft, "weights_last", "depth.pdparams"))
    opt = json.load(open(os.path.join(logs, "depth_hints_s_r18_1024x320", "opt.json")))
    assert opt["learning_rate"] == 5e-5 and opt["load_weights_folder"].startswith(pre)
    subprocess.run([os.path.join(ROOT, ".venv", "bin", "python"), os.path.join(ROOT, "export_gt_depth.py"),
                    "--data_path", data, "--split", "eigen", "--splits_dir", splits], check=True,
                   capture_output=True, cwd=ROOT, timeout=300)
    out = sh("eval", *common, "--", "--splits_dir", splits, "--batch_size", "4", "--num_workers", "0")
    assert out.count("abs_rel |") == 4          # 2 models x (stereo, mono)
    assert "Scaling ratios" in out
