"""Reliability (issue 13): bad inputs and kills never hang, never print a traceback and never
lose work. Every case here is one line of docs/TROUBLESHOOTING.md.

- a sample that fails to load during training or validation (0 or 2 loader workers) stops
  training with one line naming the file, after saving weights_last; --resume continues;
- --check_data quick catches truncated / wrong-shape / wrong-dtype hints and empty or
  truncated images before training, --check_data full also NaN hints and corrupt JPEG data;
- a run folder that holds checkpoints needs --resume or --overwrite;
- --resume falls back to the newest intact checkpoint and says which it skipped and why;
- every output path is checked before any work, naming its flag;
- test_simple reports an unreadable image and does the rest; evaluate_depth checks the
  ground truth's length before predicting and reports a corrupt image in one line;
- stale temp files of killed atomic writes are removed, interrupted checkpoint saves recovered;
- a resumed run validates on the same batches as an uninterrupted one.

Runs that could hang (the bad-sample cases) run in a subprocess with a timeout.
"""
import glob
import os
import pickle
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import checkpoint
import utils
from options import MonodepthOptions, validate_options
from utils import ToolkitError

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
    out = str(tmp_path_factory.mktemp("rel_hints"))
    rng = np.random.default_rng(0)
    for f in sorted(glob.glob(os.path.join(synthetic_kitti, "*", "*", "true_depth", "image_0*", "*.npy"))):
        date, drive, _, cam, name = os.path.relpath(f, synthetic_kitti).split(os.sep)
        d = np.load(f).astype(np.float32) * (0.1 / 0.54)
        d[rng.random(d.shape) < 0.3] = 0
        p = os.path.join(out, date, drive, cam, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        np.save(p, d[None])
    return out


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


# ----------------------------------------------------------------------------- bad samples


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


def _case_file(d, where, kind):
    if where == "train":
        return image(d, D1, 2, 2) if kind == "image" else hint(d, D1, 3, 1)
    return image(d, D2, 3, 4) if kind == "image" else hint(d, D2, 2, 3)


@pytest.mark.slow
@pytest.mark.parametrize("where,kind,workers", [("train", "image", 0), ("train", "hint", 2),
                                                ("val", "hint", 0), ("val", "image", 2)])
def test_bad_sample_stops_with_one_line_and_saves(run_data, where, kind, workers):
    """Used to hang forever (no worker: the error stayed in Paddle's reader thread; the
    validation loader never has workers) or to bury the message in tracebacks (workers)."""
    bad = _case_file(run_data, where, kind)
    backup = bad + ".good"
    shutil.copy(bad, backup)
    (write_garbage_jpeg if kind == "image" else write_nan_hint)(bad)
    args = train_args(run_data, workers=workers)
    r = run_script("train.py", args)
    line = assert_one_line_error(r, bad, "--resume", "weights_last")
    assert ("NaN" in line) if kind == "hint" else ("decode" in line or "cannot identify" in line), line
    state = os.path.join(run_data["logs"], "run", "models", "weights_last", checkpoint.STATE_FILE)
    st = checkpoint.load_trainer_state(state)
    assert st["step"] == 2 * st["epoch"] + st["batch_in_epoch"]  # whole steps only
    if (where, kind) == ("train", "image"):
        os.replace(backup, bad)  # fixed: --resume finishes the run
        r = run_script("train.py", args + ["--resume"])
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Resuming from" in r.stdout
        st = checkpoint.load_trainer_state(os.path.join(run_data["logs"], "run", "models", "weights_1",
                                                        checkpoint.STATE_FILE))
        assert st["step"] == 4


# ----------------------------------------------------------------------------- --check_data


def _opt(d, extra=()):
    opt = MonodepthOptions().parse(train_args(d, extra=extra))
    validate_options(opt)
    return opt


def test_check_data_quick_catches_broken_files(run_data):
    import datasets
    d = run_data
    datasets.check_training_data(_opt(d))  # all good
    np.save(hint(d, D1, 2, 1), np.ones((64, 192), np.float32))             # (H, W): wrong shape
    np.save(hint(d, D1, 3, 1), np.ones((1, 64, 192), np.int32))            # wrong dtype
    p = hint(d, D1, 2, 2)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])                             # truncated hint
    p = image(d, D1, 3, 2)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])                             # truncated JPEG
    open(image(d, D2, 2, 1), "wb").close()                                  # empty image
    write_nan_hint(hint(d, D2, 2, 2))                                       # only full sees these two
    write_garbage_jpeg(image(d, D2, 2, 3))
    t0 = time.time()
    with pytest.raises(ToolkitError) as e:
        datasets.check_training_data(_opt(d))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("5 bad file(s) in the training data (2 image, 3 hint;")
    assert time.time() - t0 < 60  # generous; just not a decode of everything
    for needle in ("shape (64, 192), expected (1, H, W)", "dtype int32, expected float",
                   "truncated: ", "empty file", "precompute_depth_hints.py", "--check_data full"):
        assert needle in msg, (needle, msg)
    assert "0000000002.jpg (truncated or corrupt" in msg

    with pytest.raises(ToolkitError) as e:
        datasets.check_training_data(_opt(d, ["--check_data", "full"]))
    msg = str(e.value)
    assert msg.startswith("7 bad file(s) in the training data (3 image, 4 hint; --check_data full)")
    assert "NaN" in msg and hint(d, D2, 2, 2) in msg and image(d, D2, 2, 3) in msg
    assert "more" not in msg  # every bad file listed


def test_check_data_full_reports_rate(run_data, capsys):
    import datasets
    datasets.check_training_data(_opt(run_data, ["--check_data", "full"]))
    out = capsys.readouterr().out
    assert "images/s" in out and "0 bad" in out


def test_check_data_cli_reports_truncated_hint(run_data):
    p = hint(run_data, D2, 2, 4)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    r = run_script("train.py", train_args(run_data))
    assert_one_line_error(r, p, "truncated", "precompute_depth_hints.py")
    assert not os.path.isdir(os.path.join(run_data["logs"], "run", "models"))


# ----------------------------------------------------------------------------- run folders


def test_second_run_refuses_without_resume_or_overwrite(run_data, capsys):
    import train
    d = run_data
    args = train_args(d, extra=["--max_steps", "1"])
    tr = make_trainer(args)
    assert tr.train() == 1
    models = os.path.join(d["logs"], "run", "models")
    assert os.path.isdir(os.path.join(models, "weights_last"))
    before = os.path.getmtime(os.path.join(models, "weights_last", checkpoint.STATE_FILE))
    with pytest.raises(ToolkitError, match=r"already holds checkpoints .*--resume.*--overwrite"):
        make_trainer(args)
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and "weights_last" in err and "Traceback" not in err
    assert os.path.getmtime(os.path.join(models, "weights_last", checkpoint.STATE_FILE)) == before
    # --resume continues, --overwrite starts again (the earlier checkpoints are deleted)
    res = make_trainer(args[:-2] + ["--max_steps", "2", "--resume"])
    assert res.step == 1 and res.train() == 2
    fresh = make_trainer(args + ["--overwrite"])
    assert fresh.step == 0 and checkpoint.list_checkpoints(models) == []
    log = open(os.path.join(d["logs"], "run", "train.log")).read()
    assert "--overwrite: deleted the earlier run's checkpoints" in log
    # --overwrite never deletes the weights it is asked to load
    fresh.train()
    with pytest.raises(ToolkitError, match="--load_weights_folder"):
        make_trainer(args + ["--overwrite", "--load_weights_folder", os.path.join(models, "weights_last")])


def _tiny_checkpoint(folder, step):
    import paddle
    paddle.seed(step)
    enc = paddle.nn.Linear(3, 2)
    opt = paddle.optimizer.Adam(parameters=enc.parameters())
    enc(paddle.ones([1, 3])).sum().backward()
    opt.step()
    checkpoint.save_checkpoint(folder, {"encoder": enc, "depth": paddle.nn.Linear(2, 2)}, opt,
                               {"step": step, "epoch": 0, "batch_in_epoch": step})


@pytest.mark.parametrize("broken", [checkpoint.STATE_FILE, "encoder.pdparams", checkpoint.ADAM_FILE])
def test_resume_skips_truncated_newest_checkpoint(tmp_path, broken):
    models = str(tmp_path / "models")
    _tiny_checkpoint(os.path.join(models, "weights_0"), 5)
    _tiny_checkpoint(os.path.join(models, "weights_last"), 7)
    logged = []
    assert checkpoint.find_resume_checkpoint(models, log=logged.append).endswith("weights_last")
    assert logged == []
    p = os.path.join(models, "weights_last", broken)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 3])
    found = checkpoint.find_resume_checkpoint(models, log=logged.append)
    assert found == os.path.join(models, "weights_0")
    assert len(logged) == 1 and "skipping checkpoint" in logged[0] and "weights_last" in logged[0]
    assert broken + " unreadable" in logged[0]
    # nothing intact at all: None (train.py then starts from scratch, saying so)
    p = os.path.join(models, "weights_0", broken)
    data = open(p, "rb").read()
    open(p, "wb").write(data[:10])
    assert checkpoint.find_resume_checkpoint(models, log=logged.append) is None


@pytest.mark.slow
def test_resume_cli_falls_back_and_says_so(run_data):
    d = run_data
    args = train_args(d, extra=["--log_frequency", "1000"])
    tr = make_trainer(args + ["--max_steps", "3"])
    assert tr.train() == 3  # weights_0 (step 2) and weights_last (step 3)
    p = os.path.join(d["logs"], "run", "models", "weights_last", checkpoint.STATE_FILE)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    r = run_script("train.py", args + ["--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "skipping checkpoint" in r.stdout and "weights_last" in r.stdout and "unreadable" in r.stdout
    assert "Resuming from {}".format(os.path.join(d["logs"], "run", "models", "weights_0")) in r.stdout


# ----------------------------------------------------------------------------- output paths


def test_train_log_dir_under_a_file(run_data, tmp_path, capsys):
    import train
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = train_args(run_data)
    args[args.index("--log_dir") + 1] = str(blocker / "logs")
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and "--log_dir" in err and str(blocker) in err
    assert "Traceback" not in err


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


def test_evaluate_depth_bad_output_paths_fail_before_predicting(depth_model, synthetic_kitti, eval_splits,
                                                               tmp_path, capsys):
    import evaluate_depth
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for extra, flag in (
            (["--metrics_out", str(blocker / "m.json")], "--metrics_out"),
            (["--metrics_out", str(tmp_path)], "--metrics_out"),
            (["--save_pred_disps", "--eval_out_dir", str(blocker / "out")], "--eval_out_dir")):
        assert evaluate_depth.main(_eval_args(depth_model, synthetic_kitti, eval_splits, *extra)) == 2
        cap = capsys.readouterr()
        assert len(error_lines(cap.err)) == 1 and flag in cap.err, cap.err
        assert "Computing predictions" not in cap.out and "abs_rel" not in cap.out


def test_evaluate_depth_checks_gt_length_before_predicting(depth_model, synthetic_kitti, eval_splits, capsys):
    import evaluate_depth
    gt = np.empty(5, dtype=object)
    for i in range(5):
        gt[i] = np.full((96, 320), 10.0, np.float32)
    np.savez(os.path.join(eval_splits, "eigen", "gt_depths.npz"), data=gt)
    assert evaluate_depth.main(_eval_args(depth_model, synthetic_kitti, eval_splits)) == 2
    cap = capsys.readouterr()
    assert "8 test images but 5 ground-truth maps" in cap.err
    assert "Computing predictions" not in cap.out


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_evaluate_depth_corrupt_image_is_one_line(depth_model, synthetic_kitti, eval_splits, tmp_path, workers):
    data = str(tmp_path / "data")
    shutil.copytree(synthetic_kitti, data)
    bad = image({"data": data}, D2, 2, 5)
    write_garbage_jpeg(bad)
    args = _eval_args(depth_model, data, eval_splits, "--metrics_out", str(tmp_path / "m.json"))
    args[args.index("--num_workers") + 1] = str(workers)
    r = run_script("evaluate_depth.py", args)
    assert_one_line_error(r, bad)
    assert not os.path.exists(tmp_path / "m.json")


def test_evaluate_pose_bad_output_paths(tmp_path, capsys):
    import evaluate_pose
    weights = tmp_path / "w"
    weights.mkdir()
    for name in ("pose_encoder.pdparams", "pose.pdparams"):
        (weights / name).write_bytes(b"")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for extra, flag in ((["--metrics_out", str(blocker / "m.json")], "--metrics_out"),
                        (["--eval_out_dir", str(blocker / "out")], "--eval_out_dir")):
        rc = evaluate_pose.main(["--eval_split", "odom_9", "--load_weights_folder", str(weights),
                                 "--data_path", str(tmp_path / "nodata")] + extra)
        err = capsys.readouterr().err
        assert rc == 2 and len(error_lines(err)) == 1 and flag in err, err


def test_test_simple_output_dir_under_a_file(depth_model, synthetic_kitti, tmp_path, capsys):
    import test_simple
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    img = image({"data": synthetic_kitti}, D1, 2, 0)
    assert test_simple.main(["--image_path", img, "--model_path", depth_model,
                             "--output_dir", str(blocker / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and "--output_dir" in err, err


def test_test_simple_reports_unreadable_image_and_does_the_rest(depth_model, synthetic_kitti, tmp_path, capsys):
    import test_simple
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        shutil.copy(image({"data": synthetic_kitti}, D1, 2, i), folder / f"{i}.jpg")
    write_garbage_jpeg(str(folder / "1.jpg"))
    out = tmp_path / "out"
    rc = test_simple.main(["--image_path", str(folder), "--model_path", depth_model,
                           "--output_dir", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert sorted(os.listdir(out)) == ["0_disp.npy", "0_disp.png", "2_disp.npy", "2_disp.png"]
    lines = error_lines(err)
    assert any(str(folder / "1.jpg") in ln and "skipped" in ln for ln in lines), err
    assert "Traceback" not in err


def test_export_gt_output_is_checked_first(synthetic_kitti, tmp_path, capsys):
    import export_gt_depth
    splits = tmp_path / "splits"
    shutil.copytree(os.path.join(synthetic_kitti, "splits"), splits)
    (splits / "eigen" / "gt_depths.npz").mkdir()  # a folder where the file should go
    rc = export_gt_depth.main(["--data_path", synthetic_kitti, "--split", "eigen", "--splits_dir", str(splits)])
    err = capsys.readouterr().err
    assert rc == 2 and len(error_lines(err)) == 1 and "--splits_dir" in err, err


# ----------------------------------------------------------------------------- temp files and saves


def test_clean_stale_temp_files(tmp_path):
    old = time.time() - 3600
    stale = tmp_path / ".opt.json.ab3_xy9z.tmp"
    fresh = tmp_path / ".encoder.pdparams.k2m4n6p8.tmp"
    other = tmp_path / "notes.tmp"
    for p in (stale, fresh, other):
        p.write_text("x")
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    removed = utils.clean_stale_temp_files(str(tmp_path), older_than=time.time() - 60)
    assert removed == [str(stale)]
    assert fresh.exists() and other.exists() and not stale.exists()


def test_trainer_start_tidies_models_dir(run_data):
    d = run_data
    tr = make_trainer(train_args(d, extra=["--max_steps", "1"]))
    tr.train()
    models = os.path.join(d["logs"], "run", "models")
    # a kill between the two renames of a save: weights_last.partial complete, weights_last gone
    os.replace(os.path.join(models, "weights_last"), os.path.join(models, "weights_last.partial"))
    shutil.copytree(os.path.join(models, "weights_last.partial"), os.path.join(models, "weights_7.old"))
    os.makedirs(os.path.join(models, "weights_3.partial"))  # a save killed early: incomplete
    old = time.time() - 3600
    for folder in (models, os.path.dirname(models)):
        p = os.path.join(folder, ".opt.json.zz9_qq1w.tmp")
        open(p, "w").close()
        os.utime(p, (old, old))
    res = make_trainer(train_args(d, extra=["--max_steps", "2", "--resume"]))
    names = sorted(os.listdir(models))
    assert names == ["opt.json", "weights_7", "weights_last"], names
    assert res.step == 1  # weights_last (step 1) recovered and resumed
    assert not glob.glob(os.path.join(d["logs"], "run", ".*.tmp"))
    log = open(os.path.join(d["logs"], "run", "train.log")).read()
    assert "recovered checkpoint" in log and "removed stale temp file" in log


# ----------------------------------------------------------------------------- sampling


def test_seeded_dataset_leaves_global_rng_alone_and_never_raises(run_data):
    import random

    import datasets
    opt = _opt(run_data)
    ds = datasets.SeededDataset(datasets.build_dataset(opt, "train", is_train=True), 3)
    py, npy = random.getstate(), np.random.get_state()
    a = ds[5]
    assert random.getstate() == py and np.array_equal(np.random.get_state()[1], npy[1])
    np.testing.assert_array_equal(a[("color_aug", 0, 0)], ds[5][("color_aug", 0, 0)])
    write_nan_hint(hint(run_data, D1, 3, 1))
    marker = ds[1]  # key 1 = item 1 = "D1 1 r"
    batch = datasets.collate([a, marker])
    with pytest.raises(datasets.DataLoadError, match="NaN"):
        list(datasets.checked_batches([batch]))
    os.remove(image(run_data, D1, 2, 2))
    with pytest.raises(datasets.DataLoadError, match="image not found"):
        datasets.sampling.raise_if_load_error(ds[2])


def test_resumed_run_validates_on_the_same_batches(run_data):
    """The validation position (val epoch and batch) is saved and restored, so an interrupted
    + resumed run logs the same validation losses as an uninterrupted one."""
    def record(tr, rows):
        orig_val, orig_next = tr.val, tr.val_batches.next

        def next_batch():
            batch = orig_next()
            rows.append({"color": float(np.asarray(batch[("color", 0, 0)]).sum())})
            return batch

        def val(step=None):
            losses = orig_val(step)
            rows[-1]["loss"] = float(losses["loss"])
            return losses
        tr.val_batches.next, tr.val = next_batch, val

    d = run_data
    a = make_trainer(train_args(d, "a", extra=["--num_epochs", "3"]))  # 6 steps, a validation after each
    rows_a = []
    record(a, rows_a)
    assert a.train() == 6
    b = make_trainer(train_args(d, "b", extra=["--num_epochs", "3"]))
    rows_b = []
    record(b, rows_b)

    def stop():
        if b.step == 3:
            b.request_stop()
    b.on_step_end = stop
    assert b.train() == 3
    c = make_trainer(train_args(d, "b", extra=["--num_epochs", "3", "--resume"]))
    assert c.step == 3 and c.val_batches.position == (1, 1)
    record(c, rows_b)
    assert c.train() == 6
    assert len(rows_a) == len(rows_b) == 6
    assert [r["color"] for r in rows_a] == [r["color"] for r in rows_b]
    np.testing.assert_allclose([r["loss"] for r in rows_a], [r["loss"] for r in rows_b], rtol=1e-4)
    with open(os.path.join(d["logs"], "b", "models", "weights_last", checkpoint.STATE_FILE), "rb") as f:
        assert pickle.load(f)["val_position"] == (1, 1)
