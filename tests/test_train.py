"""Training end to end on the synthetic KITTI data (issue 7 "Must show").

Hints are built from the synthetic true depth (in network units: metres * 0.1 / 0.54) with
30% of the pixels zeroed (= no hint), so the test does not depend on the SGM precompute.
"""
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def signal_after(trainer, step, sig=signal.SIGINT):
    """Send this process ``sig`` (what Ctrl-C / a scheduler's SIGTERM do) once ``step`` is done."""
    train_step = trainer.train_step

    def step_then_signal(batch):
        out = train_step(batch)
        if trainer.step + 1 == step:
            os.kill(os.getpid(), sig)
        return out
    trainer.train_step = step_then_signal


@pytest.mark.slow
def test_hint_training_loss_falls(synthetic_kitti, hints_dir, tmp_path, base_args, make_trainer, loss_recorder):
    tr = make_trainer(base_args(synthetic_kitti, hints_dir, tmp_path, "fall",
                                extra=["--num_epochs", "6", "--learning_rate", "2e-4"]))
    rec = loss_recorder(tr)
    assert tr.steps_per_epoch == 5 and tr.train()
    assert tr.step == 30 and len(rec.rows) == 30
    total = np.array([r["loss"] for r in rec.rows])
    assert np.all(np.isfinite(total))
    assert total[-6:].mean() < 0.9 * total[:6].mean(), total
    for s in range(4):
        hint = np.array([r[("hint", s)] for r in rec.rows])
        won = np.array([r[("hint_won", s)] for r in rec.rows])
        assert np.all(hint > 0)
        assert np.all((won > 0) & (won < 1)), won
    # the hint term decreases too (the network learns the hinted depth)
    h0 = np.array([r[("hint", 0)] for r in rec.rows])
    assert h0[-6:].mean() < h0[:6].mean()
    # validation: loss terms and Monodepth2's depth metrics on the synthetic LiDAR ground truth
    val = {k: float(v) for k, v in tr.val().items()}
    assert np.isfinite(val["loss"]) and 0 < val["de/abs_rel"] < 1 and 0 <= val["de/a1"] <= 1
    # checkpoints, opt.json and VisualDL logs
    models = tmp_path / "fall" / "models"
    assert ckpts(models) == ["weights_{}".format(i) for i in range(6)]
    assert (models / "opt.json").exists()
    import paddle
    enc = paddle.load(str(models / "weights_5" / "encoder.pdparams"))
    assert enc["height"] == 64 and enc["width"] == 192 and enc["use_stereo"] is True
    assert not (models / "weights_5" / "pose.pdparams").exists()  # stereo only: no pose net
    assert (tmp_path / "fall" / "opt.json").exists()
    assert glob.glob(str(tmp_path / "fall" / "train" / "vdlrecords.*"))
    assert glob.glob(str(tmp_path / "fall" / "val" / "vdlrecords.*"))


def ckpts(models_dir):
    return sorted(n for n in os.listdir(models_dir) if n.startswith("weights_"))


def _load_ckpt(folder):
    import paddle
    from checkpoint import STATE_FILE, load_trainer_state
    out = {}
    for f in sorted(os.listdir(folder)):
        if f == STATE_FILE:
            obj = load_trainer_state(os.path.join(folder, f))
            out["state"] = {k: obj[k] for k in ("epoch", "batch_in_epoch", "step", "scheduler")}
            continue
        obj = paddle.load(os.path.join(folder, f))
        for k, v in obj.items():
            if hasattr(v, "numpy"):
                out["{}/{}".format(f, k)] = v.numpy()
    return out


@pytest.mark.slow
def test_interrupt_and_resume_matches_uninterrupted(synthetic_kitti, hints_dir, tmp_path, base_args, make_trainer):
    extra = ["--num_epochs", "2", "--scheduler_step_size", "1", "--learning_rate", "2e-4"]
    a = make_trainer(base_args(synthetic_kitti, hints_dir, tmp_path / "a", "run", extra=extra))
    assert a.train() == 10

    b = make_trainer(base_args(synthetic_kitti, hints_dir, tmp_path / "b", "run", extra=extra))

    signal_after(b, 7)
    assert b.train() == 7 and b.guard.stopped == signal.SIGINT
    models_b = tmp_path / "b" / "run" / "models"
    assert ckpts(models_b) == ["weights_0", "weights_last"]

    from utils import ToolkitError
    with pytest.raises(ToolkitError, match="--height"):
        make_trainer(base_args(synthetic_kitti, hints_dir, tmp_path / "b", "run", h=96,
                               extra=extra + ["--resume"]))
    c = make_trainer(base_args(synthetic_kitti, hints_dir, tmp_path / "b", "run", extra=extra + ["--resume"]))
    assert (c.epoch, c.batch_in_epoch, c.step) == (1, 2, 7)
    assert c.train() == 10

    ca = _load_ckpt(tmp_path / "a" / "run" / "models" / "weights_1")
    cb = _load_ckpt(models_b / "weights_1")
    assert ca["state"] == cb["state"] and ca["state"]["step"] == 10 and ca["state"]["epoch"] == 2
    assert ca["state"]["scheduler"]["last_lr"] == pytest.approx(2e-6)
    assert set(ca) == set(cb)
    adam_keys = [k for k in ca if k.startswith("adam.pdopt/")]
    assert any("moment1" in k for k in adam_keys) and any("moment2" in k for k in adam_keys)
    for k in ca:
        if k != "state":
            np.testing.assert_allclose(ca[k], cb[k], rtol=1e-4, atol=1e-6, err_msg=k)
    # and the weights did change over training
    w0 = _load_ckpt(models_b / "weights_0")
    assert not np.allclose(w0["depth.pdparams/decoder.0.conv.conv.weight"],
                           cb["depth.pdparams/decoder.0.conv.conv.weight"])


@pytest.mark.slow
def test_non_finite_loss_stops_naming_step(synthetic_kitti, hints_dir, tmp_path, base_args, make_trainer):
    from utils import ToolkitError
    tr = make_trainer(base_args(synthetic_kitti, hints_dir, tmp_path, "nan", extra=["--num_epochs", "3"]))
    orig = tr.loss

    def poisoned(inputs, outputs):
        losses = orig(inputs, outputs)
        if tr.step == 6:
            losses["loss"] = losses["loss"] * float("nan")
        return losses
    poisoned.warp_sources = orig.warp_sources
    tr.loss = poisoned
    with pytest.raises(ToolkitError, match="non-finite loss .* at step 6 .*the newest good checkpoint is .*weights_0"):
        tr.train()
    models = tmp_path / "nan" / "models"
    assert ckpts(models) == ["weights_0"]  # last good checkpoint kept, nothing newer


def run_cli(args, **kw):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py")] + args, cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_ctrl_c_saves_and_resume_finishes(synthetic_kitti, hints_dir, tmp_path, base_args):
    """A real SIGINT to train.py: checkpoint weights_last, exit 130; --resume finishes the run."""
    args = base_args(synthetic_kitti, hints_dir, tmp_path, "sig", extra=["--num_epochs", "3"])
    p = run_cli(args)
    state0 = tmp_path / "sig" / "models" / "weights_0" / "trainer_state.json"
    t0 = time.time()
    while not state0.exists() and p.poll() is None and time.time() - t0 < 180:
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()[1][-2000:]
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    from checkpoint import load_trainer_state
    st = load_trainer_state(str(tmp_path / "sig" / "models" / "weights_last" / "trainer_state.json"))
    assert 5 <= st["step"] < 15 and st["step"] == 5 * st["epoch"] + st["batch_in_epoch"]
    r = run_cli(args + ["--resume"])
    out, err = r.communicate(timeout=240)
    assert r.returncode == 0, err[-2000:]
    assert "Resuming from" in out and "step {}".format(st["step"]) in out
    st2 = load_trainer_state(str(tmp_path / "sig" / "models" / "weights_2" / "trainer_state.json"))
    assert st2["step"] == 15 and st2["epoch"] == 3


@pytest.mark.slow
def test_smoke_real_resolution_cpu(synthetic_kitti, hints_dir, tmp_path, base_args, make_trainer, loss_recorder):
    """The real 192x640 configuration (ResNet18, S + hints, 4 scales) for 2 steps, batch 1."""
    args = base_args(synthetic_kitti, hints_dir, tmp_path, "smoke", h=192, w=640,
                     extra=["--max_steps", "2"])
    args[args.index("--batch_size") + 1] = "1"
    tr = make_trainer(args)
    rec = loss_recorder(tr)
    assert tr.train() == 2
    assert len(rec.rows) == 2 and all(np.isfinite(r["loss"]) for r in rec.rows)
    assert os.path.isfile(tmp_path / "smoke" / "models" / "weights_last" / "encoder.pdparams")


def _losses_with_depth(tr, inputs, depth0):
    """Run the trainer's warping + loss with a given full-resolution depth at every scale."""
    import paddle
    import paddle.nn.functional as F
    opt = tr.opt
    disp0 = (1.0 / depth0 - 1.0 / opt.max_depth) / (1.0 / opt.min_depth - 1.0 / opt.max_depth)
    outputs = {}
    for s in opt.scales:
        hs, ws = opt.height // 2 ** s, opt.width // 2 ** s
        outputs[("disp", s)] = disp0 if s == 0 else F.interpolate(disp0, [hs, ws], mode="nearest")
    with paddle.no_grad():
        tr.loss.warp_sources(inputs, outputs)
        losses = tr.loss(inputs, outputs)
    return {k: float(v) for k, v in losses.items()}


@pytest.mark.slow
def test_known_answer_true_depth(synthetic_kitti, hints_dir, tmp_path, base_args, make_trainer):
    """With the true depth (the hints, far where no hint) the stereo warp reconstructs the
    target far better (L1; SSIM has a high floor on the synthetic textures) than with a wrong depth, and the scale-0 hint term is ~0: checks
    stereo_T sign, K scaling, the hint warp and the loss wiring end to end."""
    import paddle
    from datasets import build_dataset, collate
    tr = make_trainer(base_args(synthetic_kitti, hints_dir, tmp_path, "ka", h=96, w=320,
                                extra=["--disparity_smoothness", "0", "--no_ssim"]))
    ds = build_dataset(tr.opt, "train", is_train=False)
    inputs = tr.to_tensors(collate([ds[0], ds[3]]))
    hint = inputs["depth_hint"]
    true = paddle.where(hint > 0, hint, paddle.full_like(hint, 90.0))
    good = _losses_with_depth(tr, inputs, true)
    bad = _losses_with_depth(tr, inputs, paddle.full_like(hint, 3.0))
    assert good[("hint", 0)] < 1e-4
    assert bad[("hint", 0)] > 0.1
    assert good[("reproj", 0)] < 0.7 * bad[("reproj", 0)], (good, bad)
    for s in tr.opt.scales:
        assert good[("smooth", s)] == 0.0  # --disparity_smoothness 0
        assert good[("loss", s)] == pytest.approx(good[("reproj", s)] + good[("hint", s)], rel=1e-6)
    # the hint wins somewhere for the wrong depth (its warp is better), never where it is invalid
    assert 0 < bad[("hint_won", 0)] <= float((hint > 0).astype("float32").mean()) + 1e-6
