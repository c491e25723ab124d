"""The README's first command, end to end, at a tiny size: tools/demo.sh must run every stage
(synthetic data -> hints -> train -> gt export -> evaluation -> predictions), print the
comparison table, and run again on its own output folder. The full-size demo is timed by
hand (BENCHMARKS.md)."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


DEMO = os.path.join(ROOT, "configs", "depth_hints", "depth_hints.sh")


def _demo(out, *args):
    env = dict(os.environ, DEMO_STEPS="2", DEMO_FRAMES="6")
    r = subprocess.run(["bash", DEMO, "demo", "--out", str(out), "--num_workers", "1"] + list(args),
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (args, r.stdout[-3000:], r.stderr[-3000:])
    return r


@pytest.fixture(scope="module")
def first_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_twice") / "demo"
    return out, _demo(out)


@pytest.mark.slow
def test_demo_runs_every_stage(first_demo):
    out, r = first_demo
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
    assert "trained model:     %s" % (out / "logs" / "demo" / "models" / "weights_last") in r.stdout


@pytest.mark.slow
def test_demo_runs_again(first_demo):
    """Run again on the same folder, the demo reuses the data and the hints and trains in a fresh
    run folder (demo_2, untrained_2; the first run's are kept), the flags after "--" reach both
    train.py runs; with --overwrite it trains in demo and untrained again."""
    out, _ = first_demo
    logs = out / "logs"
    first_weights = (logs / "demo" / "models" / "weights_last" / "depth.pdparams").read_bytes()
    r = _demo(out, "--", "--batch_size", "2")
    assert "reusing %s" % (out / "synthetic_kitti") in r.stdout
    assert "nothing to do: all 16 hints" in r.stdout
    assert "-> %s" % (logs / "demo_2") in r.stdout and "run 2 of this demo folder" in r.stdout
    assert "trained model:     %s" % (logs / "demo_2" / "models" / "weights_last") in r.stdout
    for name in ("demo_2", "untrained_2"):
        assert json.load(open(logs / name / "opt.json"))["batch_size"] == 2
    assert json.load(open(logs / "untrained_2" / "opt.json"))["max_steps"] == 0
    assert json.load(open(logs / "demo" / "opt.json"))["batch_size"] == 4
    assert (logs / "demo" / "models" / "weights_last" / "depth.pdparams").read_bytes() == first_weights
    m = json.load(open(out / "metrics_trained.json"))
    assert m["num_images"] == 6 and "demo_2" in m["weights_folder"]
    r = _demo(out, "--overwrite", "--steps", "1")
    assert "--overwrite: training again in %s" % (logs / "demo") in r.stdout
    assert "trained model:     %s" % (logs / "demo" / "models" / "weights_last") in r.stdout
    assert sorted(os.listdir(logs)) == ["demo", "demo_2", "untrained", "untrained_2"]
    assert json.load(open(logs / "demo" / "opt.json"))["max_steps"] == 1


def test_demo_options_are_checked():
    for args, words in ((["--steps"], "--steps needs a value"), (["--steps", "x"], "--steps must be a whole number"),
                        (["--nope"], "unknown option '--nope'")):
        r = subprocess.run(["bash", DEMO, "demo"] + args, cwd=ROOT, capture_output=True, text=True, timeout=60)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert r.returncode == 2 and len(lines) == 1 and words in lines[0], (args, r.stderr)
    r = subprocess.run(["bash", DEMO, "hints", "--overwrite"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--overwrite is a demo option" in r.stderr, r.stderr


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
