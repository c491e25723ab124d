"""datasets/: bad inputs (missing images and hints, truncated / NaN / wrong-shape hints,
malformed split lines) give one ToolkitError naming the file, and check_split."""
import numpy as np
import pytest

import datasets
from datasets import KITTIRAWDataset, check_split
from datasets.mono_dataset import load_depth_hint
from utils import ToolkitError


# ----------------------------------------------------------------------------- errors


def test_missing_image(synthetic_kitti, dataset_kit):
    folder = dataset_kit.lines(synthetic_kitti)[0].split()[0]
    ds = dataset_kit.make(KITTIRAWDataset, synthetic_kitti, [f"{folder} 7 l"], frames=[0, -1, 1])
    with pytest.raises(ToolkitError, match=r"image not found .*0000000008\.jpg.*--data_path"):
        ds[0]
    with pytest.raises(ToolkitError, match=r"1 file\(s\) missing .*1 image.*0000000008\.jpg"):
        check_split(ds)


def test_missing_hint(synthetic_kitti, tmp_path, dataset_kit):
    ds = dataset_kit.make(KITTIRAWDataset, synthetic_kitti, dataset_kit.lines(synthetic_kitti)[:3], str(tmp_path))
    with pytest.raises(ToolkitError, match=r"depth hint not found .*\.npy.*precompute_depth_hints\.py"):
        ds[0]
    with pytest.raises(ToolkitError, match=r"3 file\(s\) missing .*3 hint.*precompute_depth_hints\.py"):
        check_split(ds)


def _bad_hint(dataset_kit, tmp_path, synthetic_kitti, writer):
    line = dataset_kit.lines(synthetic_kitti)[0]
    folder, frame, side = line.split()
    d = tmp_path / folder / ("image_02" if side == "l" else "image_03")
    d.mkdir(parents=True)
    path = d / "{:010d}.npy".format(int(frame))
    writer(str(path))
    ds = dataset_kit.make(KITTIRAWDataset, synthetic_kitti, [line], str(tmp_path), frames=[0])
    check_split(ds)                     # exists: the content is checked on load
    return ds, str(path)


def test_hint_wrong_shape(synthetic_kitti, tmp_path, dataset_kit):
    shape = (dataset_kit.H, dataset_kit.W)
    ds, path = _bad_hint(dataset_kit, tmp_path, synthetic_kitti, lambda p: np.save(p, np.ones(shape, np.float32)))
    with pytest.raises(ToolkitError, match=r"bad depth hint .*shape \(64, 192\).*\(1, H, W\)"):
        ds[0]


def test_hint_truncated(synthetic_kitti, tmp_path, dataset_kit):
    def writer(p):
        np.save(p, np.ones((1, dataset_kit.H, dataset_kit.W), np.float32))
        data = open(p, "rb").read()
        open(p, "wb").write(data[: len(data) // 2])
    ds, path = _bad_hint(dataset_kit, tmp_path, synthetic_kitti, writer)
    with pytest.raises(ToolkitError, match=r"unreadable depth hint .*\.npy.*precompute_depth_hints"):
        ds[0]


def test_hint_nan(synthetic_kitti, tmp_path, dataset_kit):
    def writer(p):
        a = np.ones((1, dataset_kit.H, dataset_kit.W), np.float32)
        a[0, 3, 4] = np.nan
        np.save(p, a)
    ds, path = _bad_hint(dataset_kit, tmp_path, synthetic_kitti, writer)
    with pytest.raises(ToolkitError, match=r"bad depth hint .*NaN"):
        ds[0]


def test_malformed_split_lines(synthetic_kitti, tmp_path, dataset_kit):
    good = dataset_kit.lines(synthetic_kitti)[0]
    folder = good.split()[0]
    for bad, what in ((f"{folder} 3", "2 fields"), (f"{folder} x3 l", "not an integer"),
                      (f"{folder} 3 left", "not l or r"), (f"{folder} 3 l extra", "4 fields")):
        with pytest.raises(ToolkitError, match=f"split line 2 .*{what}"):
            KITTIRAWDataset(synthetic_kitti, [good, bad], dataset_kit.H, dataset_kit.W, [0], 1)
    p = tmp_path / "train_files.txt"
    p.write_text(good + "\n\n" + f"{folder} 3\n")
    with pytest.raises(ToolkitError, match=r"split line 3 .*train_files\.txt"):
        datasets.read_split_file(str(p))
    with pytest.raises(ToolkitError, match="multiples of 32"):
        KITTIRAWDataset(synthetic_kitti, [good], 100, dataset_kit.W, [0], 1)


def test_load_depth_hint_direct(tmp_path):
    p = tmp_path / "h.npy"
    np.save(p, np.arange(12, dtype=np.float32).reshape(1, 3, 4))
    out = load_depth_hint(str(p), 3, 4, True)
    np.testing.assert_array_equal(out[0], np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::-1])
    np.save(p, np.arange(12).reshape(1, 3, 4))           # integer dtype
    with pytest.raises(ToolkitError, match="dtype int64"):
        load_depth_hint(str(p), 3, 4, False)


def test_check_split_ok_and_temporal_edges(synthetic_kitti, hints, dataset_kit):
    lines = dataset_kit.lines(synthetic_kitti)
    check_split(dataset_kit.make(KITTIRAWDataset, synthetic_kitti, lines, hints))
    folder = lines[0].split()[0]
    ds = dataset_kit.make(KITTIRAWDataset, synthetic_kitti, [f"{folder} 0 l", f"{folder} 7 r"], frames=[0, -1, 1])
    with pytest.raises(ToolkitError, match=r"2 file\(s\) missing"):
        check_split(ds)
