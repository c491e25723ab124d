"""evaluate_pose.py: ATE math on constructed trajectories and the CLI's clear errors."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import evaluate_pose as ep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _pose(R, t):
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def test_ate_zero_for_scaled_and_offset_prediction():
    rng = np.random.default_rng(1)
    gt = np.vstack([np.zeros(3), rng.normal(size=(4, 3))])  # snippets start at the origin
    pred = gt / 3.7 + np.array([5.0, -2.0, 0.5])              # other scale, offset
    assert ep.compute_ate(gt, pred) == pytest.approx(0.0, abs=1e-12)


def test_ate_hand_computed_perturbation():
    gt = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0]], dtype=float)
    pred = gt.copy()
    pred[4, 1] = 1.0
    # scale = 30 / 31; squared error = (1/31)^2 * 30 + (30/31)^2 = 30/31; ATE = sqrt(30/31) / 5
    assert ep.compute_ate(gt, pred) == pytest.approx(math.sqrt(30 / 31) / 5, rel=1e-12)
    # the first-frame alignment removes a constant offset of the prediction
    assert ep.compute_ate(gt, pred + 10.0) == pytest.approx(math.sqrt(30 / 31) / 5, rel=1e-12)


def test_dump_xyz_chains_rotations():
    step = _pose(_rot_y(math.pi / 2), [0, 0, 1])  # move 1 forward, then turn 90 deg
    xyz = ep.dump_xyz([step, step, step])
    np.testing.assert_allclose(xyz, [[0, 0, 0], [0, 0, 1], [1, 0, 1], [1, 0, 0]], atol=1e-12)


def test_snippets_from_global_poses():
    # a curving ground-truth drive of 8 poses; the prediction is the true local motion with
    # half the translation (unknown monocular scale) -> every snippet's ATE is 0
    poses = [np.eye(4)]
    for i in range(7):
        poses.append(poses[-1] @ _pose(_rot_y(0.1 * i), [0.2 * i, 0.0, 1.0 + 0.1 * i]))
    gt_local = ep.global_to_local(np.array(poses))
    assert len(gt_local) == 7
    ates = ep.compute_snippet_ates(gt_local, gt_local)
    assert ates.shape == (7,) and np.allclose(ates, 0.0)
    scaled = [_pose(p[:3, :3], p[:3, 3] * 0.5) for p in gt_local]
    assert np.allclose(ep.compute_snippet_ates(scaled, gt_local), 0.0, atol=1e-12)
    # a wrong motion in the middle hurts exactly the snippets that contain it (i = 0..3)
    bad = list(gt_local)
    bad[3] = _pose(np.eye(3), [3.0, 0.0, 0.0])
    ates = ep.compute_snippet_ates(bad, gt_local)
    assert np.all(ates[:4] > 1e-3) and np.allclose(ates[4:], 0.0)


def test_load_gt_poses_roundtrip(tmp_path):
    p = tmp_path / "09.txt"
    P = np.arange(24, dtype=float).reshape(2, 12)
    np.savetxt(p, P)
    poses = ep.load_gt_poses(str(p))
    assert poses.shape == (2, 4, 4)
    np.testing.assert_allclose(poses[1, :3, :], P[1].reshape(3, 4))
    np.testing.assert_allclose(poses[:, 3], [[0, 0, 0, 1]] * 2)


def _pose_weights(folder):
    import paddle
    import networks
    paddle.seed(0)
    enc = networks.ResnetEncoder(18, False, 2)
    dec = networks.PoseDecoder(enc.num_ch_enc, 1, 2)
    os.makedirs(folder, exist_ok=True)
    paddle.save(enc.state_dict(), os.path.join(folder, "pose_encoder.pdparams"))
    paddle.save(dec.state_dict(), os.path.join(folder, "pose.pdparams"))


def _run(args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "evaluate_pose.py")] + args,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.slow
def test_cli_clear_errors(tmp_path):
    r = _run(["--eval_split", "eigen", "--load_weights_folder", str(tmp_path)])
    assert r.returncode == 2 and "odom_9 or odom_10" in r.stderr
    r = _run(["--eval_split", "odom_9", "--load_weights_folder", str(tmp_path / "none")])
    assert r.returncode == 2 and "weights folder not found" in r.stderr
    r = _run(["--eval_split", "odom_9", "--load_weights_folder", str(tmp_path)])
    assert r.returncode == 2 and "pose_encoder.pdparams missing" in r.stderr
    _pose_weights(str(tmp_path / "w"))
    data = tmp_path / "odom"
    data.mkdir()
    r = _run(["--eval_split", "odom_9", "--load_weights_folder", str(tmp_path / "w"),
              "--data_path", str(data)])
    assert r.returncode == 2 and "poses" in r.stderr and "09.txt" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")
    (data / "poses").mkdir()
    np.savetxt(data / "poses" / "09.txt", np.tile(np.eye(4)[:3].reshape(1, 12), (4, 1)))
    splits = tmp_path / "splits" / "odom"
    splits.mkdir(parents=True)
    (splits / "test_files_09.txt").write_text("9 0 l\n9 1 l\n")
    r = _run(["--eval_split", "odom_9", "--load_weights_folder", str(tmp_path / "w"),
              "--data_path", str(data), "--splits_dir", str(tmp_path / "splits")])
    assert r.returncode == 2 and "lists 2 frames but poses/09.txt has 4 poses" in r.stderr


def _constructed_sequence(tmp_path):
    """6 frames of a constructed odometry sequence 09 with its poses and split; returns
    (the CLI's arguments but the weights, the true global poses)."""
    from PIL import Image
    data = tmp_path / "odom"
    img_dir = data / "sequences" / "09" / "image_2"
    img_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (70, 110, 3), dtype=np.uint8)).save(img_dir / f"{i:06d}.jpg")
    (data / "poses").mkdir()
    gt = [np.eye(4)]
    for i in range(5):
        gt.append(gt[-1] @ _pose(_rot_y(0.05), [0.1, 0.0, 1.0]))
    np.savetxt(data / "poses" / "09.txt", np.array([p[:3].reshape(12) for p in gt]))
    splits = tmp_path / "splits" / "odom"
    splits.mkdir(parents=True)
    (splits / "test_files_09.txt").write_text("".join(f"9 {i} l\n" for i in range(5)))
    args = ["--eval_split", "odom_9", "--data_path", str(data), "--splits_dir", str(tmp_path / "splits"),
            "--height", "64", "--width", "96", "--batch_size", "2", "--num_workers", "0", "--device", "cpu"]
    return args, gt


@pytest.mark.slow
def test_cli_full_run_on_constructed_sequence(tmp_path):
    """6 frames of a constructed odometry sequence: the CLI's ATE equals the ATE recomputed
    from its saved poses, and poses.npy holds one 4x4 motion per pair. stdout and stderr are
    pipes: no tqdm carriage returns, a status line with rate and ETA."""
    import re
    _pose_weights(str(tmp_path / "w"))
    args, gt = _constructed_sequence(tmp_path)
    out = tmp_path / "out"
    r = _run(args + ["--load_weights_folder", str(tmp_path / "w"), "--eval_out_dir", str(out),
                     "--metrics_out", str(tmp_path / "p.json")])
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout and "\r" not in r.stderr
    assert re.search(r"^poses 3/3 batch \(100\.0 %\) \| [0-9.]+ batch/s \| elapsed \S+ \| ETA \S+$", r.stderr,
                     re.M), r.stderr
    poses = np.load(out / "poses.npy")
    assert poses.shape == (5, 4, 4)
    np.testing.assert_allclose(poses[:, 3], [[0, 0, 0, 1]] * 5, atol=1e-6)
    ates = ep.compute_snippet_ates(poses, ep.global_to_local(np.array(gt)))
    import json
    res = json.loads((tmp_path / "p.json").read_text())
    assert res["num_snippets"] == 5
    assert res["ate_mean"] == pytest.approx(float(np.mean(ates)), rel=1e-6)
    assert "Trajectory error: {:0.3f}, std: {:0.3f}".format(np.mean(ates), np.std(ates)) in r.stdout


def _payload(marker):
    """A protocol-0 pickle that runs ``touch marker`` when unpickled (os.system)."""
    return b"c" + os.system.__module__.encode() + b"\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


def test_recorded_size_runs_no_pickle_payload(tmp_path):
    import safe_load
    folder = tmp_path / "w"
    folder.mkdir()
    marker = tmp_path / "MARKER"
    (folder / "encoder.pdparams").write_bytes(_payload(marker))
    with pytest.raises(safe_load.UnsafeFileError) as info:
        ep.recorded_size(str(folder), 64, 96)
    assert str(info.value).startswith(f"refusing to load {folder / 'encoder.pdparams'}: it asks to")
    assert "\n" not in str(info.value) and not marker.exists()
    # a real record is read; none: the flags
    import paddle
    paddle.save({"height": 96, "width": 320, "conv1.weight": paddle.ones([2])}, str(folder / "encoder.pdparams"))
    assert ep.recorded_size(str(folder), 64, 96) == (96, 320)
    (folder / "encoder.pdparams").unlink()
    assert ep.recorded_size(str(folder), 64, 96) == (64, 96)


@pytest.mark.slow
def test_nan_poses_are_refused(tmp_path, capsys):
    import paddle
    import safe_load
    _pose_weights(str(tmp_path / "w"))
    path = str(tmp_path / "w" / "pose.pdparams")
    paddle.save({k: paddle.to_tensor(np.full_like(v, np.nan)) for k, v in safe_load.load_paddle(path).items()}, path)
    args, _ = _constructed_sequence(tmp_path)
    out = tmp_path / "out"
    assert ep.main(args + ["--load_weights_folder", str(tmp_path / "w"), "--eval_out_dir", str(out),
                           "--metrics_out", str(tmp_path / "p.json")]) == 2
    cap = capsys.readouterr()
    # all of stderr but the status lines and Paddle's import banner (when this test imports it first)
    errors = [ln for ln in cap.err.splitlines() if ln.strip() and not ln.startswith(
        ("poses ", "WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY"))]
    assert len(errors) == 1 and errors[0].startswith("error: 5 of 5 predicted poses hold NaN"), cap.err
    assert f"model {tmp_path / 'w'}, --load_weights_folder" in errors[0]
    assert "Trajectory error" not in cap.out
    assert not os.path.exists(out / "poses.npy") and not os.path.exists(tmp_path / "p.json")
