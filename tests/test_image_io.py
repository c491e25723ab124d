"""image_io.load_image, the one image reader: every mode becomes 8-bit RGB, a 16-bit PNG
equals its 8-bit twin, and a missing, undecodable or degenerate file is one ToolkitError
line naming it. Its users (training, precompute, test_simple) read through it."""
import os
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

import image_io
from image_io import DegenerateImageError, ImageDecodeError, ImageReadError, MissingImageError, load_image
from utils import ToolkitError


def _rgb(h=9, w=13, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _arr(path):
    img = load_image(str(path))
    assert isinstance(img, Image.Image) and img.mode == "RGB"
    return np.asarray(img)


def test_rgb_jpeg_and_png_as_pil_reads_them(tmp_path):
    x = _rgb()
    Image.fromarray(x).save(tmp_path / "a.png")
    np.testing.assert_array_equal(_arr(tmp_path / "a.png"), x)
    Image.fromarray(x).save(tmp_path / "a.jpg", quality=90)
    with Image.open(tmp_path / "a.jpg") as ref:
        np.testing.assert_array_equal(_arr(tmp_path / "a.jpg"), np.asarray(ref.convert("RGB")))


def test_sixteen_bit_png_equals_its_eight_bit_twin(tmp_path):
    x = _rgb()
    x[0, 0] = 0
    x[0, 1] = 255
    Image.fromarray(x).save(tmp_path / "rgb8.png")
    cv2.imwrite(str(tmp_path / "rgb16.png"), (x.astype(np.uint16) * 257)[..., ::-1])      # 48-bit RGB
    assert cv2.imread(str(tmp_path / "rgb16.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    np.testing.assert_array_equal(_arr(tmp_path / "rgb16.png"), _arr(tmp_path / "rgb8.png"))

    g = x[..., 1]
    Image.fromarray(g).save(tmp_path / "g8.png")
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")                      # PIL's 16-bit greyscale mode
    cv2.imwrite(str(tmp_path / "g16cv.png"), g.astype(np.uint16) * 257)
    eight = _arr(tmp_path / "g8.png")
    np.testing.assert_array_equal(eight, np.repeat(g[..., None], 3, 2))
    np.testing.assert_array_equal(_arr(tmp_path / "g16.png"), eight)
    np.testing.assert_array_equal(_arr(tmp_path / "g16cv.png"), eight)


def test_sixteen_bit_scaling_rounds():
    v = np.array([[0, 128, 129, 257, 32767, 65534, 65535]], np.uint16)
    got = np.asarray(image_io._to_rgb(Image.fromarray(v)))[..., 0]
    np.testing.assert_array_equal(got, np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8))
    i32 = Image.fromarray(np.array([[-5, 65535, 70000]], np.int32))    # mode "I": clipped to 16 bits
    assert i32.mode == "I"
    np.testing.assert_array_equal(np.asarray(image_io._to_rgb(i32))[..., 0], [[0, 255, 255]])


@pytest.mark.parametrize("mode", ["L", "P", "LA", "RGBA", "1", "CMYK"])
def test_other_modes_become_rgb(tmp_path, mode):
    x = _rgb()
    src = Image.fromarray(x)
    img = src.convert(mode) if mode != "P" else src.quantize(16)
    path = tmp_path / ("a.tif" if mode == "CMYK" else "a.png")
    img.save(path)
    with Image.open(path) as im:
        assert im.mode == mode
        ref = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(_arr(path), ref)


def test_palette_with_transparency_no_warning(tmp_path):
    img = Image.fromarray(_rgb()).quantize(8)
    img.info["transparency"] = 0
    img.save(tmp_path / "t.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _arr(tmp_path / "t.png").shape == (9, 13, 3)


@pytest.mark.parametrize("size", [(1, 1), (1, 40), (40, 1)])
def test_degenerate_image_refused(tmp_path, size):
    path = tmp_path / "tiny.png"
    Image.new("RGB", size).save(path)
    with pytest.raises(DegenerateImageError) as e:
        load_image(str(path))
    msg = str(e.value)
    assert isinstance(e.value, ToolkitError) and "\n" not in msg
    assert str(path) in msg and "{}x{}".format(*size) in msg and e.value.path == str(path)
    Image.new("RGB", (2, 2)).save(path)
    assert _arr(path).shape == (2, 2, 3)


def test_undecodable_and_missing(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8" + bytes(range(256)) * 8)
    with pytest.raises(ImageDecodeError) as e:
        load_image(str(bad))
    assert isinstance(e.value, ImageReadError) and isinstance(e.value, ToolkitError)
    assert "\n" not in str(e.value) and str(bad) in str(e.value) and "decode" in str(e.value)
    assert e.value.reason.startswith("cannot decode image (") and str(bad) not in e.value.reason
    x = _rgb(60, 80)
    Image.fromarray(x).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])        # truncated: PIL raises
    with pytest.raises(ImageDecodeError, match="t.png"):
        load_image(str(tmp_path / "t.png"))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty.png"):
        load_image(str(tmp_path / "empty.png"))
    gone = tmp_path / "gone.jpg"
    with pytest.raises(MissingImageError) as e:
        load_image(str(gone))
    assert isinstance(e.value, FileNotFoundError) and e.value.reason == "file not found"
    assert str(e.value) == "image not found ({}): check the path".format(gone)
    with pytest.raises(MissingImageError, match="--data_path"):
        load_image(str(gone), missing_fix="check --data_path")


def test_callers_read_through_image_io(tmp_path):
    """Training, the precompute and test_simple get the same pixels for a 16-bit PNG."""
    import precompute_depth_hints as P
    import test_simple
    from datasets.mono_dataset import pil_loader, to_array
    g = _rgb(64, 96)[..., 0]
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    want = np.repeat(g[..., None], 3, 2)
    np.testing.assert_array_equal(np.asarray(pil_loader(str(tmp_path / "g16.png"))), want)
    np.testing.assert_array_equal(P.load_image(str(tmp_path / "g16.png"), 96, 64), want)
    orig, arr = test_simple.load_image(str(tmp_path / "g16.png"), 96, 64)
    assert orig == (96, 64)
    np.testing.assert_allclose(arr[0], to_array(Image.fromarray(want)), atol=1e-6)
    with pytest.raises(P.InputError) as e:
        P.load_image(str(tmp_path / "none.png"), 96, 64)
    assert e.value.args == (str(tmp_path / "none.png"), "file not found")
    with pytest.raises(ToolkitError, match=r"image not found .*none\.png.*--data_path.*--png"):
        pil_loader(str(tmp_path / "none.png"))
    assert os.path.basename(image_io.__file__) == "image_io.py"
