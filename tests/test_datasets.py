"""datasets/: item keys/shapes/dtypes, K per scale, stereo_T sign, flips (images, hints,
depth_gt), colour jitter (one draw for all frames), paddle DataLoader collation (0 and 2
workers), and the real KITTI split files. Bad inputs: test_dataset_errors.py."""
import os
import random

import cv2
import numpy as np
import paddle
import pytest

import datasets
from datasets import ColorJitter, KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset, check_split
from datasets.mono_dataset import hsv_to_rgb, rgb_to_hsv
from utils import ToolkitError


class Forced(KITTIRAWDataset):
    """Dataset with a fixed augmentation, to test flips and jitter deterministically."""
    force_flip = False
    force_jitter = None

    def sample_augmentation(self):
        return self.force_flip, self.force_jitter


def test_item_keys_shapes_dtypes(synthetic_kitti, hints, dataset_kit):
    lines = dataset_kit.lines(synthetic_kitti)
    ds = dataset_kit.make(KITTIRAWDataset, synthetic_kitti, lines, hints)
    assert len(ds) == len(lines) and ds.load_depth
    random.seed(0)
    item = ds[0]
    expected = set()
    for f in dataset_kit.FRAMES:
        for s in range(4):
            expected |= {("color", f, s), ("color_aug", f, s)}
    for s in range(4):
        expected |= {("K", s), ("inv_K", s)}
    expected |= {"stereo_T", "depth_gt", "depth_hint", "depth_hint_mask"}
    assert set(item) == expected
    for k, v in item.items():
        assert isinstance(v, np.ndarray) and v.dtype == np.float32, k
    for f in dataset_kit.FRAMES:
        for s in range(4):
            for n in ("color", "color_aug"):
                a = item[(n, f, s)]
                assert a.shape == (3, dataset_kit.H // 2 ** s, dataset_kit.W // 2 ** s)
                assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.05
    assert item["depth_gt"].shape == (1, 375, 1242)
    hw = (1, dataset_kit.H, dataset_kit.W)
    assert item["depth_hint"].shape == hw and item["depth_hint_mask"].shape == hw
    assert item["stereo_T"].shape == (4, 4)
    # temporal neighbours and the stereo pair are different images
    c0 = item[("color", 0, 0)]
    for f in (-1, 1, "s"):
        assert np.abs(item[("color", f, 0)] - c0).mean() > 0.01


def test_images_are_lanczos_resizes_of_native(synthetic_kitti, dataset_kit):
    from PIL import Image
    line = dataset_kit.lines(synthetic_kitti)[0]
    folder, frame, side = line.split()
    ds = dataset_kit.make(Forced, synthetic_kitti, [line], is_train=False)
    item = ds[0]
    path = os.path.join(synthetic_kitti, folder, "image_0{}".format(2 if side == "l" else 3), "data",
                        "{:010d}.jpg".format(int(frame)))
    native = Image.open(path).convert("RGB")
    for s in range(4):
        size = (dataset_kit.W // 2 ** s, dataset_kit.H // 2 ** s)
        ref = np.asarray(native.resize(size, Image.LANCZOS), np.float32) / 255
        np.testing.assert_allclose(item[("color", 0, s)], ref.transpose(2, 0, 1), atol=1e-6)
        np.testing.assert_array_equal(item[("color_aug", 0, s)], item[("color", 0, s)])


def test_K_per_scale(synthetic_kitti, dataset_kit):
    ds = dataset_kit.make(KITTIRAWDataset, synthetic_kitti, dataset_kit.lines(synthetic_kitti)[:1])
    item = ds[0]
    for s in range(4):
        K, inv_K = item[("K", s)], item[("inv_K", s)]
        w, h = dataset_kit.W // 2 ** s, dataset_kit.H // 2 ** s
        np.testing.assert_allclose(K, [[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0],
                                       [0, 0, 1, 0], [0, 0, 0, 1]], rtol=1e-6)
        np.testing.assert_allclose(inv_K @ K, np.eye(4), atol=1e-5)


@pytest.mark.parametrize("side,flip,expected", [("l", False, -0.1), ("r", False, 0.1),
                                                 ("l", True, 0.1), ("r", True, -0.1)])
def test_stereo_T_sign(synthetic_kitti, side, flip, expected, dataset_kit):
    folder, frame = dataset_kit.lines(synthetic_kitti)[0].split()[:2]
    ds = dataset_kit.make(Forced, synthetic_kitti, [f"{folder} {frame} {side}"], frames=[0, "s"])
    ds.force_flip = flip
    T = ds[0]["stereo_T"]
    ref = np.eye(4, dtype=np.float32)
    ref[0, 3] = expected
    np.testing.assert_allclose(T, ref, atol=1e-7)


def test_no_stereo_no_stereo_T(synthetic_kitti, dataset_kit):
    ds = dataset_kit.make(KITTIRAWDataset, synthetic_kitti, dataset_kit.lines(synthetic_kitti)[:1], frames=[0, -1, 1])
    item = ds[0]
    assert "stereo_T" not in item and ("color", "s", 0) not in item


def test_stereo_frame_is_other_side(synthetic_kitti, dataset_kit):
    folder, frame = dataset_kit.lines(synthetic_kitti)[0].split()[:2]
    l = dataset_kit.make(Forced, synthetic_kitti, [f"{folder} {frame} l"], frames=[0, "s"])[0]
    r = dataset_kit.make(Forced, synthetic_kitti, [f"{folder} {frame} r"], frames=[0, "s"])[0]
    np.testing.assert_array_equal(l[("color", "s", 0)], r[("color", 0, 0)])
    np.testing.assert_array_equal(r[("color", "s", 0)], l[("color", 0, 0)])


def test_flip_images_hint_depth(synthetic_kitti, hints, dataset_kit):
    line = dataset_kit.lines(synthetic_kitti)[0]
    ds = dataset_kit.make(Forced, synthetic_kitti, [line], hints)
    a = ds[0]
    ds.force_flip = True
    b = ds[0]
    for f in dataset_kit.FRAMES:
        for s in range(4):
            # Lanczos is symmetric: resize(flip(x)) == flip(resize(x)) up to uint8 rounding
            np.testing.assert_allclose(b[("color", f, s)], a[("color", f, s)][..., ::-1], atol=1.5 / 255)
    np.testing.assert_array_equal(b["depth_hint"], a["depth_hint"][..., ::-1])
    np.testing.assert_array_equal(b["depth_hint_mask"], a["depth_hint_mask"][..., ::-1])
    np.testing.assert_array_equal(b["depth_gt"], a["depth_gt"][..., ::-1])
    # the hint is the stored pattern: zero strip on the left unflipped, on the right flipped
    folder, frame, _ = line.split()
    stored = np.load(os.path.join(hints, folder, "image_02" if line.endswith("l") else "image_03",
                                  "{:010d}.npy".format(int(frame))))
    np.testing.assert_array_equal(a["depth_hint"], stored)
    strip = dataset_kit.W // 5
    assert (a["depth_hint"][0, :, :strip] == 0).all() and (a["depth_hint"][0, :, strip:] > 0).all()
    assert (b["depth_hint"][0, :, -(dataset_kit.W // 5):] == 0).all()
    np.testing.assert_array_equal(a["depth_hint_mask"], (stored > 0).astype(np.float32))


def test_hint_other_resolution_nearest(synthetic_kitti, tmp_path, dataset_kit):
    """A hint stored at another resolution is flipped, then nearest-resized (Depth Hints)."""
    line = dataset_kit.lines(synthetic_kitti)[0]
    dataset_kit.write_hints(str(tmp_path), [line], (100, 330))
    folder, frame, side = line.split()
    raw = np.load(os.path.join(str(tmp_path), folder, "image_0{}".format(2 if side == "l" else 3),
                               "{:010d}.npy".format(int(frame))))[0]
    ds = dataset_kit.make(Forced, synthetic_kitti, [line], str(tmp_path), frames=[0])
    for flip in (False, True):
        ds.force_flip = flip
        got = ds[0]["depth_hint"]
        src = np.ascontiguousarray(raw[:, ::-1]) if flip else raw
        want = cv2.resize(src, (dataset_kit.W, dataset_kit.H), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(got[0], want)
        assert set(np.unique(got)) <= set(np.unique(raw))


def test_depth_gt_matches_lidar(synthetic_kitti, dataset_kit):
    """depth_gt is the LiDAR map (nearest-resized to 375 x 1242), values = true depths."""
    import kitti_utils
    line = dataset_kit.lines(synthetic_kitti)[0]
    folder, frame, side = line.split()
    item = dataset_kit.make(Forced, synthetic_kitti, [line], frames=[0])[0]
    gt = kitti_utils.generate_depth_map(os.path.join(synthetic_kitti, folder.split("/")[0]),
                                        os.path.join(synthetic_kitti, folder, "velodyne_points", "data",
                                                     "{:010d}.bin".format(int(frame))),
                                        2 if side == "l" else 3)
    d = item["depth_gt"][0]
    rows = ((2 * np.arange(375) + 1) * gt.shape[0]) // 750          # pixel-centre nearest
    cols = ((2 * np.arange(1242) + 1) * gt.shape[1]) // 2484
    np.testing.assert_allclose(d, gt[rows][:, cols].astype(np.float32))
    assert (d > 0).mean() > 0.02


def test_colour_jitter_same_for_all_frames(synthetic_kitti, dataset_kit):
    line = dataset_kit.lines(synthetic_kitti)[0]
    ds = dataset_kit.make(Forced, synthetic_kitti, [line])
    jit = ColorJitter(1.15, 0.85, 1.2, 0.07, order=(3, 0, 2, 1))
    ds.force_jitter = jit
    item = ds[0]
    for f in dataset_kit.FRAMES:
        for s in range(4):
            c, a = item[("color", f, s)], item[("color_aug", f, s)]
            np.testing.assert_allclose(a, jit(c), atol=1e-6)
            assert np.abs(a - c).mean() > 0.01
    # the random path: one draw per sample, recorded through the hook
    drawn = []

    class Record(KITTIRAWDataset):
        def sample_augmentation(self):
            out = super().sample_augmentation()
            drawn.append(out)
            return out

    rd = dataset_kit.make(Record, synthetic_kitti, [line])
    for seed in range(40):
        random.seed(seed)
        it = rd[0]
        flip, j = drawn[-1]
        if j is not None:
            for f in dataset_kit.FRAMES:
                np.testing.assert_allclose(it[("color_aug", f, 1)], j(it[("color", f, 1)]), atol=1e-6)
            break
    else:
        pytest.fail("no jittered sample in 40 draws")


def test_augmentation_probabilities_and_ranges():
    random.seed(123)
    ds = object.__new__(KITTIRAWDataset)
    ds.is_train = True
    ds.brightness = ds.contrast = ds.saturation = (0.8, 1.2)
    ds.hue = (-0.1, 0.1)
    draws = [KITTIRAWDataset.sample_augmentation(ds) for _ in range(2000)]
    flips = np.mean([d[0] for d in draws])
    jits = [d[1] for d in draws if d[1] is not None]
    assert 0.45 < flips < 0.55 and 0.45 < len(jits) / 2000 < 0.55
    for j in jits:
        assert 0.8 <= j.brightness <= 1.2 and 0.8 <= j.contrast <= 1.2 and 0.8 <= j.saturation <= 1.2
        assert -0.1 <= j.hue <= 0.1 and sorted(j.order) == [0, 1, 2, 3]
    assert len({j.order for j in jits}) > 12
    ds.is_train = False
    assert all(KITTIRAWDataset.sample_augmentation(ds) == (False, None) for _ in range(50))


def test_colour_jitter_known_answers():
    rng = np.random.default_rng(0)
    x = rng.random((3, 8, 9)).astype(np.float32) * 0.8
    np.testing.assert_allclose(ColorJitter(1.2)(x), np.clip(x * 1.2, 0, 1), atol=1e-6)
    gray = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    np.testing.assert_allclose(ColorJitter(1, 1, 0.0)(x), np.repeat(gray[None], 3, 0), atol=1e-6)
    m = gray.mean()
    np.testing.assert_allclose(ColorJitter(1, 0.0)(x), np.full_like(x, m), atol=1e-6)
    np.testing.assert_allclose(ColorJitter()(x), x, atol=1e-6)                  # identity
    np.testing.assert_allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    red = np.zeros((3, 1, 1), np.float32)
    red[0] = 1
    np.testing.assert_allclose(ColorJitter(hue=1 / 3)(red)[:, 0, 0], [0, 1, 0], atol=1e-5)
    np.testing.assert_allclose(ColorJitter(hue=-1 / 3)(red)[:, 0, 0], [0, 0, 1], atol=1e-5)


def test_eval_mode_no_augmentation(synthetic_kitti, dataset_kit):
    ds = dataset_kit.make(KITTIRAWDataset, synthetic_kitti, dataset_kit.lines(synthetic_kitti)[:1], is_train=False)
    a, b = ds[0], ds[0]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    for f in dataset_kit.FRAMES:
        np.testing.assert_array_equal(a[("color_aug", f, 0)], a[("color", f, 0)])
    side_sign = -1 if dataset_kit.lines(synthetic_kitti)[0].endswith("l") else 1
    assert a["stereo_T"][0, 3] == pytest.approx(side_sign * 0.1)


def test_png_and_depth_dataset(tmp_path):
    from tools.make_synthetic_kitti import make_synthetic_kitti
    info = make_synthetic_kitti(tmp_path, num_drives=1, frames_per_drive=3, width=128, height=64, ext="png")
    folder = info["drives"][0]
    line = f"{folder} 1 r"
    with pytest.raises(ToolkitError, match="--png"):
        KITTIRAWDataset(str(tmp_path), [line], 64, 128, [0, -1, 1], 1)[0]
    ds = KITTIDepthDataset(str(tmp_path), [line], 64, 128, [0, -1, 1], 1, img_ext=".png")
    assert ds.load_depth
    item = ds[0]
    png = cv2.imread(os.path.join(str(tmp_path), folder, "proj_depth", "groundtruth", "image_03",
                                  "0000000001.png"), cv2.IMREAD_UNCHANGED)
    assert item["depth_gt"].shape == (1, 375, 1242)
    assert set(np.unique(item["depth_gt"])) <= set(np.unique(png.astype(np.float32) / 256))
    # png is lossless: the scale-0 image at native size equals the file
    ds2 = KITTIRAWDataset(str(tmp_path), [line], 64, 128, [0], 1, img_ext=".png")
    img = cv2.imread(os.path.join(str(tmp_path), folder, "image_03", "data", "0000000001.png"))[..., ::-1]
    np.testing.assert_allclose(ds2[0][("color", 0, 0)], img.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_odometry_dataset(synthetic_kitti, tmp_path, dataset_kit):
    folder = dataset_kit.lines(synthetic_kitti)[0].split()[0]
    for cam in (2, 3):
        d = tmp_path / "sequences" / "09" / f"image_{cam}"
        d.mkdir(parents=True)
        for i in range(3):
            src = os.path.join(synthetic_kitti, folder, f"image_0{cam}", "data", f"{i:010d}.jpg")
            cv2.imwrite(str(d / f"{i:06d}.png"), cv2.imread(src))
    ds = KITTIOdomDataset(str(tmp_path), ["9 1 l", "09 1 r"], dataset_kit.H, dataset_kit.W, [0, -1, 1, "s"], 2,
                          img_ext=".png")
    check_split(ds)
    item = ds[0]
    assert not ds.load_depth and "depth_gt" not in item
    assert item[("color", 0, 0)].shape == (3, dataset_kit.H, dataset_kit.W)
    np.testing.assert_array_equal(ds[1][("color", "s", 0)], item[("color", 0, 0)])
    with pytest.raises(ToolkitError, match="sequence"):
        KITTIOdomDataset(str(tmp_path), ["nine 1 l"], dataset_kit.H, dataset_kit.W, [0], 1)[0]


# ----------------------------------------------------------------------------- loader


@pytest.mark.parametrize("workers", [0, 2])
def test_paddle_dataloader_collates_tuple_keys(synthetic_kitti, hints, workers, dataset_kit):
    """paddle.io.DataLoader's default collate keeps the tuple keys and stacks each value into
    a (B, ...) float32 tensor, also with worker processes."""
    lines = dataset_kit.lines(synthetic_kitti)[:4]
    ds = dataset_kit.make(KITTIRAWDataset, synthetic_kitti, lines, hints, is_train=False)
    loader = paddle.io.DataLoader(ds, batch_size=2, shuffle=False, num_workers=workers)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert set(b) == set(ds[0])
    assert tuple(b[("color_aug", "s", 3)].shape) == (2, 3, dataset_kit.H // 8, dataset_kit.W // 8)
    assert tuple(b["depth_gt"].shape) == (2, 1, 375, 1242)
    assert tuple(b[("K", 1)].shape) == (2, 4, 4)
    assert b["depth_hint"].dtype == paddle.float32
    np.testing.assert_allclose(b[("color", -1, 0)].numpy()[1], ds[1][("color", -1, 0)])
    np.testing.assert_allclose(batches[1]["depth_hint"].numpy()[0], ds[2]["depth_hint"])


# ----------------------------------------------------------------------------- real splits


def test_real_kitti_split_files(kitti_splits_dir):
    counts = {("eigen", "test_files.txt"): 697, ("eigen_benchmark", "test_files.txt"): 652,
              ("eigen_zhou", "train_files.txt"): 39810, ("eigen_zhou", "val_files.txt"): 4424,
              ("eigen_full", "train_files.txt"): 45200, ("eigen_full", "val_files.txt"): 1776,
              ("odom", "train_files.txt"): 36671, ("odom", "val_files.txt"): 4075,
              ("odom", "test_files_09.txt"): 1590, ("odom", "test_files_10.txt"): 1200,
              ("benchmark", "train_files.txt"): 72084, ("benchmark", "val_files.txt"): 6060}
    for (split, name), n in counts.items():
        lines = datasets.read_split_file(os.path.join(kitti_splits_dir, split, name))
        assert len(lines) == n, (split, name)
    folder, frame, side = datasets.parse_split_line(
        datasets.read_split_file(os.path.join(kitti_splits_dir, "eigen", "test_files.txt"))[0])
    assert folder == "2011_09_26/2011_09_26_drive_0002_sync" and frame == 69 and side == "l"
    # the benchmark test list has no frame/side: it is not a training list
    with pytest.raises(ToolkitError, match="malformed split line 1"):
        datasets.read_split_file(os.path.join(kitti_splits_dir, "benchmark", "test_files.txt"))
    # check_split reports a whole split without data quickly (one listing per folder)
    lines = datasets.read_split_file(os.path.join(kitti_splits_dir, "eigen_zhou", "val_files.txt"))
    ds = KITTIRAWDataset("/nonexistent_kitti", lines, 192, 640, [0, -1, 1, "s"], 4, is_train=True,
                         use_depth_hints=True)
    with pytest.raises(ToolkitError, match=r"file\(s\) missing .*hint.*precompute_depth_hints") as e:
        check_split(ds)
    n_missing = int(str(e.value).split(" ")[0])
    assert n_missing > 4 * len(lines) and "/nonexistent_kitti/2011_" in str(e.value)
    odo = datasets.read_split_file(os.path.join(kitti_splits_dir, "odom", "test_files_09.txt"))
    ds = KITTIOdomDataset("/nonexistent_kitti", odo[:5], 192, 640, [0, 1], 1)
    assert ds.get_image_path("9", 0, "l") == "/nonexistent_kitti/sequences/09/image_2/000000.jpg"
