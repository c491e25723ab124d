"""Options a user is handed (a recipe, a colleague's opt.json) are values, never flags, and are
bounded: nothing in a config file can add --overwrite, a YAML alias bomb or a binary file is
one short line, and every float option is finite (a NaN learning rate or baseline would
train or evaluate garbage with exit code 0)."""
import os
import subprocess
import sys

import pytest

from options import MonodepthOptions, validate_options
from utils import ToolkitError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv):
    opt = MonodepthOptions().parse(argv)
    validate_options(opt)
    return opt


@pytest.mark.parametrize("text,key", [
    ('frame_ids: [0, "--overwrite"]\n', "frame_ids"),
    ('model_name: "--overwrite"\n', "model_name"),
    ('models_to_load: [encoder, "--resume"]\n', "models_to_load"),
    ('split: "-x"\n', "split"),
])
def test_a_config_value_never_becomes_a_flag(tmp_path, text, key):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ToolkitError) as err:
        parse(["--config", str(cfg)])
    msg = str(err.value)
    assert "\n" not in msg and "'{}'".format(key) in msg and str(cfg) in msg, msg


def test_negative_numbers_are_values(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text('frame_ids: [0, -1, "1"]\nuse_stereo: true\n')
    assert parse(["--config", str(cfg)]).frame_ids == [0, -1, 1]


def test_the_injection_cannot_delete_a_run(tmp_path):
    """The case that deleted a run's checkpoints with exit 0: now exit 2, the run intact."""
    models = tmp_path / "log" / "m" / "models" / "weights_0"
    models.mkdir(parents=True)
    (models / "encoder.pdparams").write_bytes(b"x")
    cfg = tmp_path / "c.yaml"
    cfg.write_text('frame_ids: [0, "--overwrite"]\n')
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--config", str(cfg), "--log_dir",
                        str(tmp_path / "log"), "--model_name", "m"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "frame_ids" in r.stderr, r.stderr
    assert (models / "encoder.pdparams").read_bytes() == b"x"


def test_a_yaml_alias_bomb_is_one_short_line(tmp_path):
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        lines.append("a{}: &a{} [{}]".format(i, i, ", ".join(["*a{}".format(i - 1)] * 9)))
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    assert cfg.stat().st_size < 600
    with pytest.raises(ToolkitError) as err:
        parse(["--config", str(cfg)])
    assert len(str(err.value)) < 400 and "unknown option 'a0'" in str(err.value)
    cfg.write_text("\n".join(lines).replace("a0:", "frame_ids:", 1).replace("a1:", "scales:", 1) + "\n")
    with pytest.raises(ToolkitError) as err:
        parse(["--config", str(cfg)])
    assert len(str(err.value)) < 400 and "'frame_ids'" in str(err.value), str(err.value)


def test_a_config_that_is_not_utf8_or_too_big(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"model_name: caf\xe9\n")
    with pytest.raises(ToolkitError, match=r"not UTF-8 text \(--config .*c\.yaml"):
        parse(["--config", str(cfg)])
    cfg.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ToolkitError, match="over 1048576 bytes"):
        parse(["--config", str(cfg)])


@pytest.mark.parametrize("argv,flag", [
    (["--learning_rate", "nan"], "--learning_rate"),
    (["--learning_rate", "inf"], "--learning_rate"),
    (["--stereo_baseline", "nan"], "--stereo_baseline"),
    (["--disparity_smoothness", "nan"], "--disparity_smoothness"),
    (["--disparity_smoothness", "-1"], "--disparity_smoothness"),
    (["--loader_timeout", "inf"], "--loader_timeout"),
    (["--min_depth", "nan"], "--min_depth"),
    (["--pred_depth_scale_factor", "0"], "--pred_depth_scale_factor"),
    (["--intrinsics", "nan", "1.9", "0.5", "0.5"], "--intrinsics"),
])
def test_float_options_are_finite(argv, flag):
    with pytest.raises(ToolkitError) as err:
        parse(["--use_stereo", "--frame_ids", "0"] + argv)
    assert flag in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("h,w", [(32, 32), (64, 32), (100, 640), (192, 100000), (8192, 640)])
def test_sizes_the_networks_can_run(h, w):
    """Below 64x64 the network's gather crashes; 100000 wide runs into the OOM killer."""
    with pytest.raises(ToolkitError, match=r"of at least 64x64 and at most 4096 a side \(--height/--width\)"):
        parse(["--use_stereo", "--frame_ids", "0", "--height", str(h), "--width", str(w)])
