"""Fixtures and helpers of the reliability tests (tests/test_reliability.py and
tests/test_check_data.py): a private copy of the synthetic data with a small split (the
tests corrupt files), an untrained depth model, an eigen split with ground truth, and
writers of broken files."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import write_true_depth_hints
from options import MonodepthOptions, validate_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
D1 = "2011_09_26/2011_09_26_drive_0001_sync"
D2 = "2011_09_28/2011_09_28_drive_0002_sync"
TRAIN_LINES = [f"{D1} 1 l", f"{D1} 1 r", f"{D1} 2 l", f"{D1} 2 r"]   # 2 steps an epoch at batch 2
VAL_LINES = [f"{D2} 1 l", f"{D2} 2 l", f"{D2} 3 l", f"{D2} 4 l"]     # 2 validation batches
TIMEOUT = 300


@pytest.fixture(scope="module")
def hints_src(synthetic_kitti, tmp_path_factory):
    """Hints from the synthetic true depth (network units, 30% of the pixels without hint)."""
    return write_true_depth_hints(synthetic_kitti, str(tmp_path_factory.mktemp("rel_hints")))


@pytest.fixture
def run_data(synthetic_kitti, hints_src, tmp_path):
    """A private copy of the data and hints (tests corrupt files) and a small split."""
    data, hints = str(tmp_path / "data"), str(tmp_path / "hints")
    shutil.copytree(synthetic_kitti, data)
    shutil.copytree(hints_src, hints)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train_files.txt").write_text("\n".join(TRAIN_LINES) + "\n")
    (split / "val_files.txt").write_text("\n".join(VAL_LINES) + "\n")
    return {"data": data, "hints": hints, "split": str(split), "logs": str(tmp_path / "logs")}


def image(d, folder, cam, frame):
    return os.path.join(d["data"], folder, f"image_0{cam}", "data", f"{frame:010d}.jpg")


def hint(d, folder, cam, frame):
    return os.path.join(d["hints"], folder, f"image_0{cam}", f"{frame:010d}.npy")


def train_args(d, name="run", workers=0, extra=()):
    return ["--data_path", d["data"], "--split", d["split"], "--height", "64", "--width", "192",
            "--batch_size", "2", "--use_stereo", "--frame_ids", "0", "--use_depth_hints",
            "--depth_hint_path", d["hints"], "--weights_init", "scratch", "--log_dir", d["logs"],
            "--model_name", name, "--num_workers", str(workers), "--log_frequency", "1",
            "--device", "cpu", "--num_epochs", "2"] + list(extra)


def make_trainer(args):
    from trainer import Trainer
    opt = MonodepthOptions().parse(args)
    validate_options(opt)
    return Trainer(opt)


def run_script(script, args, timeout=TIMEOUT):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([PY, os.path.join(ROOT, script)] + [str(a) for a in args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_lines(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def assert_one_line_error(r, *needles, code=2):
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = error_lines(r.stderr)
    assert len(errors) == 1, r.stderr[-3000:]
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def _opt(d, extra=()):
    opt = MonodepthOptions().parse(train_args(d, extra=extra))
    validate_options(opt)
    return opt


def write_nan_hint(path):
    a = np.load(path)
    a[0, 5, 7] = np.nan
    np.save(path, a)


def write_garbage_jpeg(path):
    """Right size and JPEG markers (passes --check_data quick), but the data does not decode."""
    n = os.path.getsize(path)
    rng = np.random.default_rng(1)
    body = rng.integers(0, 256, max(n - 4, 64), dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(b"\xff\xd8" + body.replace(b"\xff", b"\x00") + b"\xff\xd9")


@pytest.fixture(scope="module")
def depth_model(tmp_path_factory):
    from helpers import save_untrained_depth_model
    folder = str(tmp_path_factory.mktemp("rel_model") / "weights_0")
    save_untrained_depth_model(folder, 64, 192, use_stereo=True)
    return folder


@pytest.fixture
def eval_splits(synthetic_kitti, tmp_path):
    """A splits folder whose eigen split has a gt_depths.npz (8 maps, one per test line)."""
    splits = tmp_path / "splits"
    shutil.copytree(os.path.join(synthetic_kitti, "splits"), splits)
    gt = np.empty(8, dtype=object)
    for i in range(8):
        gt[i] = np.full((96, 320), 10.0, np.float32)
    np.savez(splits / "eigen" / "gt_depths.npz", data=gt)
    return str(splits)


def _eval_args(model, data, splits, *extra):
    return ["--load_weights_folder", model, "--data_path", data, "--eval_split", "eigen",
            "--splits_dir", splits, "--eval_stereo", "--num_workers", "0", "--batch_size", "4"] + list(extra)
