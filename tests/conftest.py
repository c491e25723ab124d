"""Shared pytest fixtures and the helpers behind them. No test module imports another
module of tests/: what several modules need is here, as a fixture.

- `synthetic_kitti`: one small synthetic KITTI-layout data set per test run
  (tools/make_synthetic_kitti.py) that every end-to-end test reads; `repo_root`,
  `kitti_splits_dir`.
- Models and hints: `save_untrained_depth_model` and `write_true_depth_hints` (each returns
  the function of that name), `hints_dir` (hints from the synthetic true depth).
- Training: `base_args`, `make_trainer` (functions), `loss_recorder` (the `Recorder` class).
- Reliability (tests corrupt files): `run_data` (a private copy of the data and hints with
  a small split), `depth_model`, `eval_splits`, and `rel_kit`, a namespace of the constants and
  helpers those tests call (`rel_kit.train_args(run_data)`, `rel_kit.hint(run_data, rel_kit.D1, 3, 1)`, ...).
- Datasets: `hints` (ramp-pattern hints) and `dataset_kit` (`H`, `W`, `FRAMES`, `lines`,
  `make`, `write_hints`).
- Evaluation: `identity_encoder` and `ramp_decoder`, stand-ins for the networks.
"""
import glob
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SHARED_SPLITS = os.path.join(os.path.dirname(ROOT), "shared", "kitti_splits")
PY = sys.executable


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


@pytest.fixture(scope="session")
def kitti_splits_dir():
    if not os.path.isdir(SHARED_SPLITS):
        pytest.skip("../shared/kitti_splits not present")
    return SHARED_SPLITS


@pytest.fixture(scope="session")
def synthetic_kitti(tmp_path_factory):
    """A small synthetic KITTI raw tree (320x96 images, LiDAR, calib, splits)."""
    from tools.make_synthetic_kitti import make_synthetic_kitti
    out = str(tmp_path_factory.mktemp("synthetic_kitti"))
    make_synthetic_kitti(out, num_drives=2, frames_per_drive=8, width=320, height=96, seed=0)
    return out


# ----------------------------------------------------------------------------- models and hints


def save_untrained_depth_model(folder, height, width, use_stereo=True, seed=0):
    """Write a randomly initialised ResNet18 depth model folder (encoder.pdparams with
    height/width/use_stereo, depth.pdparams) and return the (encoder, decoder) in eval mode."""
    import paddle
    import networks
    paddle.seed(seed)
    enc = networks.ResnetEncoder(18, False)
    dec = networks.DepthDecoder(enc.num_ch_enc, scales=range(4))
    os.makedirs(folder, exist_ok=True)
    state = dict(enc.state_dict())
    state.update(height=height, width=width, use_stereo=use_stereo)
    paddle.save(state, os.path.join(folder, "encoder.pdparams"))
    paddle.save(dec.state_dict(), os.path.join(folder, "depth.pdparams"))
    enc.eval()
    dec.eval()
    return enc, dec


def write_true_depth_hints(data, out, drop=0.3, seed=0):
    """Depth-hint files from the synthetic data's true depth (network units: metres * 0.1 /
    0.54), with a fraction ``drop`` of the pixels zeroed (= no hint), in the precompute's
    layout under ``out``; so tests of training need not run the SGM precompute."""
    rng = np.random.default_rng(seed)
    for f in sorted(glob.glob(os.path.join(data, "*", "*", "true_depth", "image_0*", "*.npy"))):
        date, drive, _, cam, name = os.path.relpath(f, data).split(os.sep)
        d = np.load(f).astype(np.float32) * (0.1 / 0.54)
        if drop:
            d[rng.random(d.shape) < drop] = 0
        p = os.path.join(out, date, drive, cam, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        np.save(p, d[None])
    return out


@pytest.fixture(scope="session", name="save_untrained_depth_model")
def _save_untrained_depth_model_fixture():
    """:func:`save_untrained_depth_model`: ``fn(folder, height, width, use_stereo=True, seed=0)``."""
    return save_untrained_depth_model


@pytest.fixture(scope="session", name="write_true_depth_hints")
def _write_true_depth_hints_fixture():
    """:func:`write_true_depth_hints`: ``fn(data, out, drop=0.3, seed=0)``."""
    return write_true_depth_hints


@pytest.fixture(scope="module")
def hints_dir(synthetic_kitti, tmp_path_factory):
    """Hints from the synthetic true depth (network units, 30% of the pixels without hint);
    one folder per test module."""
    return write_true_depth_hints(synthetic_kitti, str(tmp_path_factory.mktemp("hints")))


# ----------------------------------------------------------------------------- training


def base_args(data, hints, log_dir, name, h=64, w=192, extra=()):
    """train.py arguments: stereo + hints on the synthetic split, scratch weights, CPU."""
    return ["--data_path", data, "--split", os.path.join(data, "splits", "synthetic"),
            "--height", str(h), "--width", str(w), "--batch_size", "2", "--use_stereo", "--frame_ids", "0",
            "--use_depth_hints", "--depth_hint_path", hints, "--weights_init", "scratch",
            "--log_dir", str(log_dir), "--model_name", name, "--num_workers", "0",
            "--log_frequency", "1000", "--device", "cpu"] + list(extra)


def make_trainer(args):
    """A Trainer from train.py arguments, validated as train.py does."""
    from options import MonodepthOptions, validate_options
    from trainer import Trainer
    opt = MonodepthOptions().parse(args)
    validate_options(opt)
    return Trainer(opt)


class Recorder:
    """Collects float loss terms after every step (wrapping the trainer's step)."""

    def __init__(self, trainer):
        self.rows = []
        step = trainer.train_step

        def recorded(batch):
            out = step(batch)
            self.rows.append({k: float(v) for k, v in out[2].items()})
            return out
        trainer.train_step = recorded


@pytest.fixture(scope="session", name="base_args")
def _base_args_fixture():
    """:func:`base_args`: ``fn(data, hints, log_dir, name, h=64, w=192, extra=())``."""
    return base_args


@pytest.fixture(scope="session", name="make_trainer")
def _make_trainer_fixture():
    """:func:`make_trainer`: ``fn(args) -> Trainer``."""
    return make_trainer


@pytest.fixture(scope="session")
def loss_recorder():
    """The :class:`Recorder` class: ``rec = loss_recorder(trainer)``; ``rec.rows`` after training."""
    return Recorder


# ----------------------------------------------------------------------------- reliability

D1 = "2011_09_26/2011_09_26_drive_0001_sync"
D2 = "2011_09_28/2011_09_28_drive_0002_sync"
TRAIN_LINES = [f"{D1} 1 l", f"{D1} 1 r", f"{D1} 2 l", f"{D1} 2 r"]   # 2 steps an epoch at batch 2
VAL_LINES = [f"{D2} 1 l", f"{D2} 2 l", f"{D2} 3 l", f"{D2} 4 l"]     # 2 validation batches
TIMEOUT = 300


def image(d, folder, cam, frame):
    """Path of an image of ``run_data`` ``d``."""
    return os.path.join(d["data"], folder, f"image_0{cam}", "data", f"{frame:010d}.jpg")


def hint(d, folder, cam, frame):
    """Path of a hint of ``run_data`` ``d``."""
    return os.path.join(d["hints"], folder, f"image_0{cam}", f"{frame:010d}.npy")


def train_args(d, name="run", workers=0, extra=()):
    """train.py arguments for ``run_data`` ``d``: 64x192, batch 2, 2 epochs of 2 steps."""
    return ["--data_path", d["data"], "--split", d["split"], "--height", "64", "--width", "192",
            "--batch_size", "2", "--use_stereo", "--frame_ids", "0", "--use_depth_hints",
            "--depth_hint_path", d["hints"], "--weights_init", "scratch", "--log_dir", d["logs"],
            "--model_name", name, "--num_workers", str(workers), "--log_frequency", "1",
            "--device", "cpu", "--num_epochs", "2"] + list(extra)


def train_opt(d, extra=()):
    """The validated options of :func:`train_args`."""
    from options import MonodepthOptions, validate_options
    opt = MonodepthOptions().parse(train_args(d, extra=extra))
    validate_options(opt)
    return opt


def eval_args(model, data, splits, *extra):
    """evaluate_depth.py arguments: the eigen split of ``splits`` (see ``eval_splits``), stereo."""
    return ["--load_weights_folder", model, "--data_path", data, "--eval_split", "eigen",
            "--splits_dir", splits, "--eval_stereo", "--num_workers", "0", "--batch_size", "4"] + list(extra)


def run_script(script, args, timeout=TIMEOUT):
    """Run a script of the repository in a subprocess; the CompletedProcess (text output)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([PY, os.path.join(ROOT, script)] + [str(a) for a in args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_lines(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def assert_one_line_error(r, *needles, code=2):
    """``r`` exited with ``code``, no traceback, exactly one ``error:`` line holding every
    needle; returns that line."""
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = error_lines(r.stderr)
    assert len(errors) == 1, r.stderr[-3000:]
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


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


@pytest.fixture(scope="session")
def rel_kit():
    """The reliability tests' constants and helpers: ``ROOT``, ``D1``/``D2`` (the two drives),
    ``TRAIN_LINES``/``VAL_LINES`` (run_data's split), ``image``/``hint`` (paths in run_data),
    ``train_args``, ``train_opt``, ``eval_args``, ``make_trainer``, ``run_script``,
    ``error_lines``, ``assert_one_line_error``, ``write_nan_hint``, ``write_garbage_jpeg``."""
    return types.SimpleNamespace(
        ROOT=ROOT, D1=D1, D2=D2, TRAIN_LINES=TRAIN_LINES, VAL_LINES=VAL_LINES, TIMEOUT=TIMEOUT,
        image=image, hint=hint, train_args=train_args, train_opt=train_opt, eval_args=eval_args,
        make_trainer=make_trainer, run_script=run_script, error_lines=error_lines,
        assert_one_line_error=assert_one_line_error, write_nan_hint=write_nan_hint,
        write_garbage_jpeg=write_garbage_jpeg)


@pytest.fixture
def run_data(synthetic_kitti, hints_dir, tmp_path):
    """A private copy of the data and hints (tests corrupt files) and a small split:
    ``{"data", "hints", "split", "logs"}``."""
    data, hints = str(tmp_path / "data"), str(tmp_path / "hints")
    shutil.copytree(synthetic_kitti, data)
    shutil.copytree(hints_dir, hints)
    split = tmp_path / "split"
    split.mkdir()
    (split / "train_files.txt").write_text("\n".join(TRAIN_LINES) + "\n")
    (split / "val_files.txt").write_text("\n".join(VAL_LINES) + "\n")
    return {"data": data, "hints": hints, "split": str(split), "logs": str(tmp_path / "logs")}


@pytest.fixture(scope="module")
def depth_model(tmp_path_factory):
    """An untrained stereo depth model folder at 64x192."""
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


# ----------------------------------------------------------------------------- datasets

DS_H, DS_W = 64, 192          # dataset resolution (native synthetic images are 96 x 320)
DS_FRAMES = [0, -1, 1, "s"]


def split_lines(root, name="train_files.txt"):
    """The lines of the synthetic split file ``name``."""
    return [ln for ln in open(os.path.join(root, "splits", "synthetic", name)).read().split("\n") if ln]


def make_dataset(cls, root, lines, hint_dir=None, **kw):
    """``cls`` (a KITTI dataset class) at DS_H x DS_W with DS_FRAMES, 4 scales, training mode;
    hints when ``hint_dir`` is given; ``frames=``/``is_train=`` override."""
    return cls(root, lines, DS_H, DS_W, kw.pop("frames", DS_FRAMES), 4, is_train=kw.pop("is_train", True),
               use_depth_hints=hint_dir is not None, depth_hint_path=hint_dir, **kw)


def write_ramp_hints(hint_dir, lines, shape):
    """Hint files (1, h, w) with an asymmetric, known pattern (zeros in the left columns)."""
    h, w = shape
    for ln in lines:
        folder, frame, side = ln.split()
        d = os.path.join(hint_dir, folder, "image_0{}".format(2 if side == "l" else 3))
        os.makedirs(d, exist_ok=True)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        hint = 1.0 + xx * 0.5 + yy * 0.01 + int(frame)
        hint[:, : w // 5] = 0                     # invalid strip on the left only
        np.save(os.path.join(d, "{:010d}.npy".format(int(frame))), hint[None])


@pytest.fixture(scope="session")
def dataset_kit():
    """The dataset tests' constants and helpers: ``H``, ``W``, ``FRAMES``, ``lines(root,
    name="train_files.txt")``, ``make(cls, root, lines, hint_dir=None, **kw)``,
    ``write_hints(hint_dir, lines, shape)``."""
    return types.SimpleNamespace(H=DS_H, W=DS_W, FRAMES=DS_FRAMES, lines=split_lines, make=make_dataset,
                                 write_hints=write_ramp_hints)


@pytest.fixture(scope="module")
def hints(synthetic_kitti, tmp_path_factory):
    """Ramp-pattern hints (:func:`write_ramp_hints`) at DS_H x DS_W for the synthetic
    training and validation lines."""
    d = str(tmp_path_factory.mktemp("hints"))
    lines = split_lines(synthetic_kitti) + split_lines(synthetic_kitti, "val_files.txt")
    write_ramp_hints(d, lines, (DS_H, DS_W))
    return d


# ----------------------------------------------------------------------------- evaluation


class _Identity:
    def __call__(self, x):
        return x


class _RampDecoder:
    """disp = the image's first channel (so a mirrored input gives a mirrored disparity)."""

    def __call__(self, x):
        return {("disp", 0): x[:, :1]}


@pytest.fixture(scope="session")
def identity_encoder():
    """An encoder stand-in that returns its input."""
    return _Identity()


@pytest.fixture(scope="session")
def ramp_decoder():
    """A depth-decoder stand-in: ``{("disp", 0): x[:, :1]}``, the image's first channel."""
    return _RampDecoder()
