"""tools/make_synthetic_kitti.py: layout, calibration, geometry known answers, stereo and
temporal photometric consistency, determinism, split files, CLI."""
import os

import cv2
import numpy as np
import pytest

from tools import make_synthetic_kitti as msk
import kitti_utils

W, H = 320, 96          # the conftest fixture's size
FX, FY, CX, CY = 0.58 * W, 1.92 * H, 0.5 * W, 0.5 * H


def _drives(root):
    lines = open(os.path.join(root, "splits", "synthetic", "train_files.txt")).read().split("\n")
    train = sorted({ln.split()[0] for ln in lines if ln.strip()})
    test = open(os.path.join(root, "splits", "eigen", "test_files.txt")).readline().split()[0]
    return train, test


def _img(root, folder, cam, frame, ext="jpg"):
    path = os.path.join(root, folder, f"image_0{cam}", "data", f"{frame:010d}.{ext}")
    return cv2.imread(path)[..., ::-1].astype(np.float32) / 255.0


def _true(root, folder, cam, frame):
    return np.load(os.path.join(root, folder, "true_depth", f"image_0{cam}", f"{frame:010d}.npy"))


def test_layout(synthetic_kitti):
    root = synthetic_kitti
    train, test = _drives(root)
    assert len(train) == 1 and test not in train
    for folder in train + [test]:
        date = folder.split("/")[0]
        assert folder == f"{date}/{os.path.basename(folder)}" and folder.endswith("_sync")
        for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
            assert os.path.isfile(os.path.join(root, date, name))
        for cam in (2, 3):
            imgs = sorted(os.listdir(os.path.join(root, folder, f"image_0{cam}", "data")))
            assert imgs == [f"{i:010d}.jpg" for i in range(8)]
            im = cv2.imread(os.path.join(root, folder, f"image_0{cam}", "data", imgs[0]))
            assert im.shape == (H, W, 3)
            gt = cv2.imread(os.path.join(root, folder, "proj_depth", "groundtruth", f"image_0{cam}",
                                         "0000000003.png"), cv2.IMREAD_UNCHANGED)
            assert gt.dtype == np.uint16 and gt.shape == (H, W)
            td = _true(root, folder, cam, 3)
            assert td.dtype == np.float32 and td.shape == (H, W)
        velo = np.fromfile(os.path.join(root, folder, "velodyne_points", "data", "0000000005.bin"), np.float32)
        assert velo.size % 4 == 0 and velo.size > 400


def test_calibration(synthetic_kitti):
    date = "2011_09_26"
    c = kitti_utils.read_calib_file(os.path.join(synthetic_kitti, date, "calib_cam_to_cam.txt"))
    assert "calib_time" not in c
    np.testing.assert_allclose(c["S_rect_02"], [W, H])
    P2 = c["P_rect_02"].reshape(3, 4)
    P3 = c["P_rect_03"].reshape(3, 4)
    # principal point shifted +1 px for generate_depth_map's round(u) - 1
    np.testing.assert_allclose(P2[:, :3], [[FX, 0, CX + 1], [0, FY, CY + 1], [0, 0, 1]])
    assert P2[0, 3] == 0 and P3[0, 3] == pytest.approx(-FX * 0.54)
    np.testing.assert_allclose(c["R_rect_00"].reshape(3, 3), np.eye(3))
    v = kitti_utils.read_calib_file(os.path.join(synthetic_kitti, date, "calib_velo_to_cam.txt"))
    R = v["R"].reshape(3, 3)
    # velodyne x (forward) is camera z, y (left) is -x, z (up) is -y; no z offset
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 0, 1])
    np.testing.assert_allclose(R @ [0, 1, 0], [-1, 0, 0])
    np.testing.assert_allclose(R @ [0, 0, 1], [0, -1, 0])
    assert v["T"][2] == 0


def test_ground_plane_known_depth(synthetic_kitti):
    """The bottom-centre pixel sees the road: depth = 1.65 * fy / (v - cy)."""
    root = synthetic_kitti
    train, test = _drives(root)
    for folder in train + [test]:
        for frame in (0, 4, 7):
            d = _true(root, folder, 2, frame)
            for v in (H - 1, H - 5):
                assert d[v, W // 2] == pytest.approx(1.65 * FY / (v - CY), rel=1e-5)


def test_scene_content(synthetic_kitti):
    """Buildings, cars and a far end wall: depths span near to ~100+ m, lower rows all valid."""
    d = _true(synthetic_kitti, _drives(synthetic_kitti)[0][0], 2, 2)
    assert (d[H // 3:] > 0).all()
    assert d.max() > 60 and d[d > 0].min() < 8
    img = _img(synthetic_kitti, _drives(synthetic_kitti)[0][0], 2, 2)
    # textured: strong local gradients almost everywhere
    gx = np.abs(np.diff(img.mean(2), axis=1))
    assert np.median(gx) > 0.01


def _sample(img, x, y):
    return cv2.remap(img, x.astype(np.float32), y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=(-1, -1, -1))


def test_stereo_consistency(synthetic_kitti):
    """Warping the right image with the true left depth reproduces the left image
    (baseline 0.54 m, camera 3 to the right), much better than no warp."""
    root = synthetic_kitti
    folder = _drives(root)[0][0]
    left, right = _img(root, folder, 2, 3), _img(root, folder, 3, 3)
    d = _true(root, folder, 2, 3)
    dr = _true(root, folder, 3, 3)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    disp = np.where(d > 0, FX * 0.54 / np.maximum(d, 1e-6), 0)
    xr = u - disp
    warped = _sample(right, xr, v)
    # visible in the right view: its depth at the target pixel agrees
    dr_at = _sample(np.repeat(dr[..., None], 3, 2), np.round(xr), v)[..., 0]
    ok = (d > 0) & (xr >= 1) & (xr <= W - 2) & (np.abs(dr_at - d) < 0.05 * d)
    assert ok.mean() > 0.6
    err = np.abs(warped - left).mean(2)[ok].mean()
    base = np.abs(right - left).mean(2)[ok].mean()
    assert err < 0.035 and err < 0.4 * base


def test_temporal_consistency(synthetic_kitti):
    """Frame t+1 warped into frame t with the known camera motion matches frame t."""
    root = synthetic_kitti
    folder = _drives(root)[0][0]
    info = msk._drive_frames(8, np.random.default_rng([0, 0]))[0]     # same RNG as drive 0
    t0, t1 = 3, 4
    delta = info[t1] - info[t0]
    assert 0.8 <= delta[2] <= 1.0 and abs(delta[0]) < 0.1
    img0, img1 = _img(root, folder, 2, t0), _img(root, folder, 2, t1)
    d = _true(root, folder, 2, t0)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    X = (u - CX) / FX * d - delta[0]
    Y = (v - CY) / FY * d - delta[1]
    Z = d - delta[2]
    front = (d > 0) & (Z > 0.5)
    x1 = np.where(front, FX * X / np.where(front, Z, 1) + CX, -10)
    y1 = np.where(front, FY * Y / np.where(front, Z, 1) + CY, -10)
    ok = front & (x1 >= 1) & (x1 <= W - 2) & (y1 >= 1) & (y1 <= H - 2)
    warped = _sample(img1, x1, y1)
    err = np.abs(warped - img0).mean(2)[ok].mean()
    base = np.abs(img1 - img0).mean(2)[ok].mean()
    assert ok.mean() > 0.5 and err < 0.04 and err < 0.5 * base


def test_splits(synthetic_kitti):
    root = synthetic_kitti
    sp = os.path.join(root, "splits")
    train = open(os.path.join(sp, "synthetic", "train_files.txt")).read().split("\n")
    val = open(os.path.join(sp, "synthetic", "val_files.txt")).read().split("\n")
    train = [ln for ln in train if ln]
    val = [ln for ln in val if ln]
    assert len(train) + len(val) == 12 and len(val) >= 1 and not set(train) & set(val)
    for ln in train + val:
        folder, frame, side = ln.split()
        assert side in ("l", "r") and 1 <= int(frame) <= 6        # both neighbours exist
    eig = [ln.split() for ln in open(os.path.join(sp, "eigen", "test_files.txt")).read().split("\n") if ln]
    ebm = [ln.split() for ln in open(os.path.join(sp, "eigen_benchmark", "test_files.txt")).read().split("\n") if ln]
    assert [e[1] for e in eig] == [f"{i:010d}" for i in range(8)]
    assert [int(e[1]) for e in ebm] == list(range(8))
    assert {e[2] for e in eig + ebm} == {"l"}
    assert {e[0] for e in eig} == {e[0] for e in ebm} and eig[0][0] not in {ln.split()[0] for ln in train}


@pytest.mark.slow
def test_deterministic_and_png(tmp_path):
    a = msk.make_synthetic_kitti(tmp_path / "a", num_drives=1, frames_per_drive=3, width=128, height=64, seed=3, ext="png")
    b = msk.make_synthetic_kitti(tmp_path / "b", num_drives=1, frames_per_drive=3, width=128, height=64, seed=3, ext="png",
                                 workers=2)   # output independent of the worker count
    c = msk.make_synthetic_kitti(tmp_path / "c", num_drives=1, frames_per_drive=3, width=128, height=64, seed=4, ext="png")
    folder = a["drives"][0]
    assert a["test_drive"] == folder and a["train_drives"] == [folder]
    rel = os.path.join(folder, "image_02", "data", "0000000001.png")
    ba = open(tmp_path / "a" / rel, "rb").read()
    assert ba == open(tmp_path / "b" / rel, "rb").read()
    assert ba != open(tmp_path / "c" / rel, "rb").read()
    np.testing.assert_array_equal(_true(str(tmp_path / "a"), folder, 3, 2), _true(str(tmp_path / "b"), folder, 3, 2))
    va = open(tmp_path / "a" / folder / "velodyne_points" / "data" / "0000000002.bin", "rb").read()
    assert va == open(tmp_path / "b" / folder / "velodyne_points" / "data" / "0000000002.bin", "rb").read()
    # png images are lossless: the written image is exactly the rendered one
    d = _true(str(tmp_path / "a"), folder, 2, 1)
    assert d.shape == (64, 128)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert msk.main(["--out", str(out), "--num_drives", "2", "--frames_per_drive", "3",
                     "--width", "64", "--height", "32"]) == 0
    assert os.path.isfile(out / "splits" / "eigen" / "test_files.txt")
    assert msk.main(["--out", str(out), "--frames_per_drive", "1"]) == 2
    assert "error:" in capsys.readouterr().err
