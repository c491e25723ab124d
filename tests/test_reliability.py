"""Reliability (issue 13), run folders and outputs: nothing is silently overwritten and
nothing is lost. Each case is a line of docs/TROUBLESHOOTING.md.

- a run folder that holds checkpoints needs --resume or --overwrite;
- --resume falls back to the newest intact checkpoint and says which it skipped and why;
- every output path is checked before any work, naming its flag; evaluate_depth checks the
  ground truth's length before predicting;
- stale temp files of killed atomic writes are removed, interrupted checkpoint saves recovered;
- a resumed run validates on the same batches as an uninterrupted one.
"""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import checkpoint
import fileio
from utils import ToolkitError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- run folders


@pytest.mark.slow
def test_second_run_refuses_without_resume_or_overwrite(run_data, capsys, rel_kit, make_trainer):
    import train
    d = run_data
    args = rel_kit.train_args(d, extra=["--max_steps", "1"])
    tr = make_trainer(args)
    assert tr.train() == 1
    models = os.path.join(d["logs"], "run", "models")
    assert os.path.isdir(os.path.join(models, "weights_last"))
    before = os.path.getmtime(os.path.join(models, "weights_last", checkpoint.STATE_FILE))
    with pytest.raises(ToolkitError, match=r"already holds checkpoints .*--resume.*--overwrite"):
        make_trainer(args)
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert len(rel_kit.error_lines(err)) == 1 and "weights_last" in err and "Traceback" not in err
    assert os.path.getmtime(os.path.join(models, "weights_last", checkpoint.STATE_FILE)) == before
    # --resume continues, --overwrite starts again (the earlier checkpoints are deleted)
    res = make_trainer(args[:-2] + ["--max_steps", "2", "--resume"])
    assert res.step == 1 and res.train() == 2
    records = os.path.join(d["logs"], "run", "train", "vdlrecords.*")
    assert glob.glob(records)  # the earlier runs' VisualDL curves
    fresh = make_trainer(args + ["--overwrite"])
    assert fresh.step == 0 and checkpoint.list_checkpoints(models) == []
    assert glob.glob(records) == []  # not drawn over the new run's
    log = open(os.path.join(d["logs"], "run", "train.log")).read()
    assert "--overwrite: deleted the earlier run's checkpoints" in log
    assert "--overwrite: deleted the earlier run's VisualDL records" in log
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


def test_disk_full_while_saving_keeps_the_earlier_checkpoint(tmp_path, monkeypatch):
    import errno
    folder = str(tmp_path / "models" / "weights_last")
    _tiny_checkpoint(folder, 5)
    real_save, calls = fileio.atomic_paddle_save, []

    def full_disk(obj, path):  # the second file of the checkpoint does not fit
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_save(obj, path)

    monkeypatch.setattr(fileio, "atomic_paddle_save", full_disk)
    with pytest.raises(ToolkitError) as info:
        _tiny_checkpoint(folder, 7)
    msg = str(info.value)
    assert "\n" not in msg and folder in msg and "No space left on device" in msg and "--resume" in msg
    assert sorted(os.listdir(tmp_path / "models")) == ["weights_last"]  # no .partial left behind
    assert checkpoint.load_trainer_state(os.path.join(folder, checkpoint.STATE_FILE))["step"] == 5
    assert checkpoint.find_resume_checkpoint(str(tmp_path / "models"), log=print) == folder


@pytest.mark.slow
def test_resume_cli_falls_back_and_says_so(run_data, rel_kit, make_trainer):
    d = run_data
    args = rel_kit.train_args(d, extra=["--log_frequency", "1000"])
    tr = make_trainer(args + ["--max_steps", "3"])
    assert tr.train() == 3  # weights_0 (step 2) and weights_last (step 3)
    p = os.path.join(d["logs"], "run", "models", "weights_last", checkpoint.STATE_FILE)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    r = rel_kit.run_script("train.py", args + ["--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert "skipping checkpoint" in r.stdout and "weights_last" in r.stdout and "unreadable" in r.stdout
    assert "Resuming from {}".format(os.path.join(d["logs"], "run", "models", "weights_0")) in r.stdout


# ----------------------------------------------------------------------------- output paths


def test_train_log_dir_under_a_file(run_data, tmp_path, capsys, rel_kit):
    import train
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = rel_kit.train_args(run_data)
    args[args.index("--log_dir") + 1] = str(blocker / "logs")
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert len(rel_kit.error_lines(err)) == 1 and "--log_dir" in err and str(blocker) in err
    assert "Traceback" not in err


def test_evaluate_depth_bad_output_paths_fail_before_predicting(depth_model, synthetic_kitti, eval_splits,
                                                               tmp_path, capsys, rel_kit):
    import evaluate_depth
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for extra, flag in (
            (["--metrics_out", str(blocker / "m.json")], "--metrics_out"),
            (["--metrics_out", str(tmp_path)], "--metrics_out"),
            (["--save_pred_disps", "--eval_out_dir", str(blocker / "out")], "--eval_out_dir")):
        assert evaluate_depth.main(rel_kit.eval_args(depth_model, synthetic_kitti, eval_splits, *extra)) == 2
        cap = capsys.readouterr()
        assert len(rel_kit.error_lines(cap.err)) == 1 and flag in cap.err, cap.err
        assert "Computing predictions" not in cap.out and "abs_rel" not in cap.out


def test_evaluate_depth_checks_gt_length_before_predicting(depth_model, synthetic_kitti, eval_splits, capsys, rel_kit):
    import evaluate_depth
    gt = np.empty(5, dtype=object)
    for i in range(5):
        gt[i] = np.full((96, 320), 10.0, np.float32)
    np.savez(os.path.join(eval_splits, "eigen", "gt_depths.npz"), data=gt)
    assert evaluate_depth.main(rel_kit.eval_args(depth_model, synthetic_kitti, eval_splits)) == 2
    cap = capsys.readouterr()
    assert "8 test images but 5 ground-truth maps" in cap.err
    assert "Computing predictions" not in cap.out


def test_evaluate_pose_bad_output_paths(tmp_path, capsys, rel_kit):
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
        assert rc == 2 and len(rel_kit.error_lines(err)) == 1 and flag in err, err


def test_test_simple_output_dir_under_a_file(depth_model, synthetic_kitti, tmp_path, capsys, rel_kit):
    import test_simple
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    img = rel_kit.image({"data": synthetic_kitti}, rel_kit.D1, 2, 0)
    assert test_simple.main(["--image_path", img, "--model_path", depth_model,
                             "--output_dir", str(blocker / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert len(rel_kit.error_lines(err)) == 1 and "--output_dir" in err, err


def test_export_gt_output_is_checked_first(synthetic_kitti, tmp_path, capsys, rel_kit):
    import export_gt_depth
    splits = tmp_path / "splits"
    shutil.copytree(os.path.join(synthetic_kitti, "splits"), splits)
    (splits / "eigen" / "gt_depths.npz").mkdir()  # a folder where the file should go
    rc = export_gt_depth.main(["--data_path", synthetic_kitti, "--split", "eigen", "--splits_dir", str(splits)])
    err = capsys.readouterr().err
    assert rc == 2 and len(rel_kit.error_lines(err)) == 1 and "--splits_dir" in err, err


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
    removed = fileio.clean_stale_temp_files(str(tmp_path), older_than=time.time() - 60)
    assert removed == [str(stale)]
    assert fresh.exists() and other.exists() and not stale.exists()


@pytest.mark.slow
def test_trainer_start_tidies_models_dir(run_data, rel_kit, make_trainer):
    d = run_data
    tr = make_trainer(rel_kit.train_args(d, extra=["--max_steps", "1"]))
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
    res = make_trainer(rel_kit.train_args(d, extra=["--max_steps", "2", "--resume"]))
    names = sorted(os.listdir(models))
    assert names == ["opt.json", "weights_7", "weights_last"], names
    assert res.step == 1  # weights_last (step 1) recovered and resumed
    assert not glob.glob(os.path.join(d["logs"], "run", ".*.tmp"))
    log = open(os.path.join(d["logs"], "run", "train.log")).read()
    assert "recovered checkpoint" in log and "removed stale temp file" in log


@pytest.mark.slow
def test_resumed_run_validates_on_the_same_batches(run_data, rel_kit, make_trainer):
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
    a = make_trainer(rel_kit.train_args(d, "a", extra=["--num_epochs", "3"]))  # 6 steps, a validation after each
    rows_a = []
    record(a, rows_a)
    assert a.train() == 6
    b = make_trainer(rel_kit.train_args(d, "b", extra=["--num_epochs", "3"]))
    rows_b = []
    record(b, rows_b)

    train_step = b.train_step

    def step_then_signal(batch):  # Ctrl-C once step 3 is done
        out = train_step(batch)
        if b.step + 1 == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return out
    b.train_step = step_then_signal
    assert b.train() == 3 and b.guard.stopped == signal.SIGINT
    c = make_trainer(rel_kit.train_args(d, "b", extra=["--num_epochs", "3", "--resume"]))
    assert c.step == 3 and c.val_batches.position == (1, 1)
    record(c, rows_b)
    assert c.train() == 6
    assert len(rows_a) == len(rows_b) == 6
    assert [r["color"] for r in rows_a] == [r["color"] for r in rows_b]
    np.testing.assert_allclose([r["loss"] for r in rows_a], [r["loss"] for r in rows_b], rtol=1e-4)
    state = checkpoint.load_trainer_state(os.path.join(d["logs"], "b", "models", "weights_last", checkpoint.STATE_FILE))
    assert tuple(state["val_position"]) == (1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_process_group_with_workers_saves(run_data, sig, rel_kit):
    """Ctrl-C in a terminal and a job scheduler's SIGTERM reach the loader's worker processes
    too: they end quietly and the trainer still saves weights_last and exits 128 + signal."""
    d = run_data
    args = rel_kit.train_args(d, workers=2, extra=["--num_epochs", "50", "--log_frequency", "1000"])
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py")] + args, cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    state0 = os.path.join(d["logs"], "run", "models", "weights_0", checkpoint.STATE_FILE)
    t0 = time.time()
    while not os.path.exists(state0) and p.poll() is None and time.time() - t0 < 240:
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()[1][-2000:]
    time.sleep(1)
    os.killpg(p.pid, sig)
    try:
        _, err = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    assert p.returncode == 128 + int(sig), err[-2000:]
    assert "Traceback" not in err and not rel_kit.error_lines(err), err[-2000:]
    st = checkpoint.load_trainer_state(os.path.join(d["logs"], "run", "models", "weights_last", checkpoint.STATE_FILE))
    assert st["step"] >= 2 and st["step"] == 2 * st["epoch"] + st["batch_in_epoch"]
