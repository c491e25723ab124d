"""--config files (YAML/JSON, opt.json round trip, command line wins), the paper's recipe
files, and your own camera (--intrinsics, intrinsics.txt, --stereo_baseline)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import options
from options import MonodepthOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, "configs", "depth_hints")


def parsed(argv):
    d = vars(MonodepthOptions().parse(argv))
    return {k: v for k, v in d.items() if k not in ("config", "_given", "_argv")}


def test_opt_json_round_trip(tmp_path):
    argv = ["--data_path", "/data/kitti", "--use_stereo", "--frame_ids", "0", "--use_depth_hints",
            "--height", "320", "--width", "1024", "--learning_rate", "5e-5", "--models_to_load", "encoder",
            "depth", "--intrinsics", "0.6", "1.9", "0.51", "0.49", "--stereo_baseline", "0.3", "--seed", "3"]
    opt = MonodepthOptions().parse(argv)
    path = tmp_path / "opt.json"
    path.write_text(options.to_json(opt))
    again = MonodepthOptions().parse(["--config", str(path)])
    want = {k: v for k, v in vars(opt).items() if k not in ("config", "_given", "_argv")}
    got = {k: v for k, v in vars(again).items() if k not in ("config", "_given", "_argv")}
    assert got == want
    assert again.config == str(path) and again._given == {"config"}


def test_command_line_wins_and_yaml_json_agree(tmp_path):
    (tmp_path / "c.yaml").write_text("height: 320\nwidth: 1024\nuse_stereo: true\nframe_ids: [0]\n"
                                     "learning_rate: 5.0e-5\n")
    (tmp_path / "c.json").write_text(json.dumps({"height": 320, "width": 1024, "use_stereo": True,
                                                 "frame_ids": [0], "learning_rate": 5e-5}))
    a = parsed(["--config", str(tmp_path / "c.yaml")])
    assert a == parsed(["--config", str(tmp_path / "c.json")])
    assert (a["height"], a["width"], a["use_stereo"], a["frame_ids"], a["learning_rate"]) == (320, 1024, True, [0], 5e-5)
    b = parsed(["--width", "640", "--config", str(tmp_path / "c.yaml"), "--frame_ids", "0", "-1", "1"])
    assert (b["height"], b["width"], b["frame_ids"]) == (320, 640, [0, -1, 1])


# the commands configs/depth_hints/depth_hints.sh ran before it used the recipe files
OLD_PRETRAIN = ["--use_depth_hints", "--frame_ids", "0", "--use_stereo", "--split", "eigen_full",
                "--scheduler_step_size", "5", "--disparity_smoothness", "0", "--height", "192", "--width", "640",
                "--batch_size", "12", "--num_epochs", "20"]
OLD_FINETUNE = ["--use_depth_hints", "--frame_ids", "0", "--use_stereo", "--split", "eigen_full",
                "--scheduler_step_size", "5", "--disparity_smoothness", "0", "--height", "320", "--width", "1024",
                "--batch_size", "12", "--num_epochs", "5", "--learning_rate", "5e-5", "--models_to_load",
                "encoder", "depth"]
# README's MS command (plus the sizes and epochs of the recipe)
OLD_MS = ["--use_depth_hints", "--frame_ids", "0", "-1", "1", "--use_stereo", "--split", "eigen_zhou",
          "--scheduler_step_size", "5", "--height", "192", "--width", "640", "--batch_size", "12",
          "--num_epochs", "20"]
OLD_MS_HR = OLD_MS[:-8] + ["--height", "320", "--width", "1024", "--batch_size", "12", "--num_epochs", "5",
                           "--learning_rate", "5e-5"]
SITE = ["--data_path", "/d", "--log_dir", "/l", "--model_name", "m", "--depth_hint_path", "/h", "--num_layers", "50"]


@pytest.mark.parametrize("name,old", [("s_640x192", OLD_PRETRAIN), ("s_1024x320", OLD_FINETUNE),
                                      ("ms_640x192", OLD_MS), ("ms_1024x320", OLD_MS_HR)])
def test_recipe_files_match_the_commands_they_replace(name, old):
    path = os.path.join(CFG, name + ".yaml")
    assert parsed(["--config", path] + SITE) == parsed(SITE + old)
    script = open(os.path.join(CFG, "depth_hints.sh")).read()
    assert '--config "$CFG/${RECIPE}_640x192.yaml"' in script and '--config "$CFG/${RECIPE}_1024x320.yaml"' in script


def run_train(args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] + args, capture_output=True, text=True,
                          timeout=240, cwd=ROOT, env=env)


@pytest.mark.parametrize("text,words", [
    ("heigth: 320\n", ["unknown option 'heigth'"]),
    ("height: [1, 2]\n", ["'height' takes one value"]),
    ("use_stereo: 3\n", ["'use_stereo' is a switch"]),
    ("height: big\n", ["bad value", "height"]),
    ("height: [320\n", ["cannot parse"]),
    ("- a\n- b\n", ["must map option names"]),
])
def test_bad_config_one_line(tmp_path, text, words):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    r = run_train(["--config", str(cfg), "--log_dir", str(tmp_path / "log")])
    assert r.returncode == 2, r.stderr[-1500:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(cfg) in lines[0], r.stderr
    for w in words:
        assert w in lines[0], lines[0]


# ----------------------------------------------------------------------------- your own camera


def test_intrinsics_reach_K_flips_and_per_folder_file(synthetic_kitti):
    import camera
    from datasets import build_dataset
    argv = ["--data_path", synthetic_kitti, "--split", os.path.join(synthetic_kitti, "splits", "synthetic"),
            "--height", "64", "--width", "192", "--use_stereo", "--frame_ids", "0",
            "--intrinsics", "0.7", "2.0", "0.45", "0.55"]
    opt = MonodepthOptions().parse(argv)
    options.validate_options(opt)
    ds = build_dataset(opt, "train", is_train=False)
    item = ds[0]
    for s in range(4):
        w, h = 192 // 2 ** s, 64 // 2 ** s
        K = item[("K", s)]
        np.testing.assert_allclose([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], [0.7 * w, 2.0 * h, 0.45 * w, 0.55 * h],
                                   rtol=1e-6)
        np.testing.assert_allclose(item[("inv_K", s)], np.linalg.pinv(K), rtol=1e-5, atol=1e-7)
    # a mirrored sample mirrors the principal point
    assert ds.normalised_K(ds.lines[0][0], do_flip=True)[0, 2] == pytest.approx(0.55)
    # an intrinsics.txt in the date folder wins there
    folder = ds.lines[0][0]
    date = folder.split("/")[0]
    path = os.path.join(synthetic_kitti, date, camera.INTRINSICS_FILE)
    try:
        with open(path, "w") as f:
            f.write("# my camera\n0.5 1.5 0.5 0.5\n")
        item = build_dataset(opt, "train", is_train=False)[0]
        assert item[("K", 0)][0, 0] == pytest.approx(0.5 * 192)
    finally:
        os.remove(path)


@pytest.mark.parametrize("values,ok", [(["0.58", "1.92", "0.5", "0.5"], True), (["0.58", "1.92"], False),
                                       (["-1", "1", "0.5", "0.5"], False), (["nope.txt"], False)])
def test_intrinsics_flag_checked(values, ok):
    import camera
    from utils import ToolkitError
    if ok:
        np.testing.assert_allclose(camera.intrinsics_from_option(values), camera.KITTI_K)
    else:
        with pytest.raises(ToolkitError, match="--intrinsics"):
            camera.intrinsics_from_option(values)


def test_metric_scale_uses_baseline_and_focal_ratio():
    import test_simple
    kitti = {"stereo_baseline": 0.54, "intrinsics": [0.58, 1.92, 0.5, 0.5]}
    assert test_simple.metric_depth_scale(kitti) == 5.4
    assert test_simple.metric_depth_scale({"stereo_baseline": 0.12, "intrinsics": [0.58, 1.92, 0.5, 0.5]}) == \
        pytest.approx(1.2)
    # the same network on a camera with twice the (normalised) focal length sees things twice as large
    assert test_simple.metric_depth_scale(kitti, None, ["1.16", "1.92", "0.5", "0.5"]) == pytest.approx(10.8)
    assert test_simple.metric_depth_scale(kitti, 0.3) == pytest.approx(3.0)
