"""Tests for utils.py: file lists, atomic writes, split folders, device pick, colour map."""
import os

import numpy as np
import paddle
import pytest

import runtime
import fileio
import image_io
import kitti_utils
import utils


def test_readlines(tmp_path):
    p = tmp_path / "files.txt"
    p.write_text("2011_09_26/2011_09_26_drive_0022_sync 473 r\n\nfoo 1 l\r\n")
    assert fileio.readlines(str(p)) == ["2011_09_26/2011_09_26_drive_0022_sync 473 r", "foo 1 l"]
    with pytest.raises(utils.ToolkitError, match="missing.txt") as e:
        fileio.readlines(str(tmp_path / "missing.txt"))
    assert isinstance(e.value, FileNotFoundError)


def test_normalize_image():
    x = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_allclose(image_io.normalize_image(x), [[0, 0.25], [0.5, 1.0]])
    xt = paddle.to_tensor(x.astype("float32"))
    np.testing.assert_allclose(image_io.normalize_image(xt).numpy(), [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(image_io.normalize_image(np.full((2, 2), 3.0)), 0.0)


def _no_temp_files(folder):
    return [f for f in os.listdir(folder) if f.endswith(".tmp")] == []


def test_atomic_savers_roundtrip(tmp_path):
    a = np.arange(12, dtype="float32").reshape(1, 3, 4)
    p = fileio.atomic_save_npy(str(tmp_path / "sub" / "0000000001.npy"), a)
    np.testing.assert_array_equal(np.load(p), a)
    p = fileio.atomic_save_npz(str(tmp_path / "gt_depths.npz"), data=a, other=a * 2)
    with np.load(p) as z:
        np.testing.assert_array_equal(z["other"], a * 2)
    p = fileio.atomic_write_text(str(tmp_path / "opt.json"), '{"a": 1}')
    assert open(p).read() == '{"a": 1}'
    sd = {"w": paddle.to_tensor(a), "height": 192, "use_stereo": True}
    p = fileio.atomic_paddle_save(sd, str(tmp_path / "models" / "encoder.pdparams"))
    back = paddle.load(p)
    np.testing.assert_array_equal(np.asarray(back["w"]), a)
    assert back["height"] == 192 and back["use_stereo"] is True
    assert _no_temp_files(tmp_path) and _no_temp_files(tmp_path / "sub")
    assert _no_temp_files(tmp_path / "models")
    # permissions like a normally created file, not mkstemp's 0600
    normal = tmp_path / "normal.txt"
    normal.write_text("x")
    assert os.stat(p).st_mode & 0o777 == os.stat(normal).st_mode & 0o777


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "hint.npy"
    fileio.atomic_save_npy(str(target), np.zeros(3))

    def broken_save(f, arr):
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(fileio.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_save_npy(str(target), np.ones(3))
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(str(target)), np.zeros(3))  # old content intact
    assert os.listdir(tmp_path) == ["hint.npy"]
    with pytest.raises(OSError):  # a new file is never created half-written
        monkeypatch.setattr(fileio.np, "save", broken_save)
        fileio.atomic_save_npy(str(tmp_path / "new.npy"), np.ones(3))
    assert os.listdir(tmp_path) == ["hint.npy"]


def test_resolve_split_dir(tmp_path):
    (tmp_path / "eigen_zhou").mkdir()
    assert kitti_utils.resolve_split_dir("eigen_zhou", str(tmp_path)) == str(tmp_path / "eigen_zhou")
    assert kitti_utils.resolve_split_dir(str(tmp_path / "eigen_zhou")) == str(tmp_path / "eigen_zhou")
    with pytest.raises(FileNotFoundError) as e:
        kitti_utils.resolve_split_dir("nosuch", str(tmp_path))
    assert isinstance(e.value, utils.ToolkitError)
    msg = str(e.value)
    assert "nosuch" in msg and str(tmp_path / "nosuch") in msg and "--splits_dir" in msg
    with pytest.raises(utils.ToolkitError):
        kitti_utils.resolve_split_dir("", str(tmp_path))


def test_resolve_split_dir_default_is_repo_splits(repo_root):
    with pytest.raises(FileNotFoundError) as e:
        kitti_utils.resolve_split_dir("definitely_not_a_split")
    assert os.path.join(repo_root, "splits", "definitely_not_a_split") in str(e.value)


def test_pick_device():
    assert runtime.pick_device("cpu") == "cpu"
    assert paddle.device.get_device() == "cpu"
    expect = "gpu" if (paddle.device.is_compiled_with_cuda()
                       and paddle.device.cuda.device_count() > 0) else "cpu"
    assert runtime.pick_device("auto") == expect
    runtime.pick_device("cpu")
    with pytest.raises(utils.ToolkitError, match="--device"):
        runtime.pick_device("tpu")
    if expect == "cpu":
        with pytest.raises(utils.ToolkitError, match="--device cpu"):
            runtime.pick_device("gpu")


def test_colormap_disp():
    import matplotlib
    disp = np.linspace(0, 1, 100).reshape(10, 10)
    rgb = image_io.colormap_disp(disp)
    assert rgb.shape == (10, 10, 3) and rgb.dtype == np.uint8
    magma = matplotlib.colormaps["magma"]
    lo = (np.array(magma(0.0)[:3]) * 255).astype(np.uint8)
    hi = (np.array(magma(1.0)[:3]) * 255).astype(np.uint8)
    np.testing.assert_array_equal(rgb[0, 0], lo)
    # everything above the 95th percentile saturates at the top colour
    np.testing.assert_array_equal(rgb[9, 9], hi)
    np.testing.assert_array_equal(rgb[9, 6], hi)
    assert not np.array_equal(rgb[9, 3], hi)
    # tensors and (1, 1, H, W) shapes are accepted
    rgb2 = image_io.colormap_disp(paddle.to_tensor(disp[None, None].astype("float32")))
    assert rgb2.shape == (10, 10, 3)
