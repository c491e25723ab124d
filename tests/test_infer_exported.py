"""tools/infer_exported.py: an exported model on a folder of images writes the files
test_simple.py writes for the same weights (PNG and .npy), in Paddle Inference and ONNX Runtime."""
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import export_model
import test_simple
from tools import infer_exported

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 96  # network resolution recorded in encoder.pdparams
IMAGES = (("a", (50, 70)), ("b", (40, 90)), ("c", (64, 96)))  # name, (h, w)


@pytest.fixture(scope="module")
def model(tmp_path_factory, save_untrained_depth_model):
    folder = str(tmp_path_factory.mktemp("stereo"))
    save_untrained_depth_model(folder, H, W, use_stereo=True, seed=3)
    return folder


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from PIL import Image
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for name, (h, w) in IMAGES:
        Image.fromarray(rng.uniform(0, 255, (h, w, 3)).astype(np.uint8)).save(d / f"{name}.png")
    return d


@pytest.fixture(scope="module")
def simple_outputs(model, image_folder, tmp_path_factory):
    """test_simple.py's files for the same weights: disparity and metric depth."""
    out = tmp_path_factory.mktemp("simple")
    for extra in ([], ["--pred_metric_depth"]):
        assert test_simple.main(["--image_path", str(image_folder), "--ext", "png", "--model_path",
                                 model, "--output_dir", str(out), "--device", "cpu"] + extra) == 0
    return out


def _export(model, tmp_path, kind, fmt):
    prefix = str(tmp_path / "exported" / "depth")
    assert export_model.main(["--load_weights_folder", model, "--output_path", prefix,
                              "--output", kind, "--format", fmt]) == 0
    return prefix


def _png(path):
    from PIL import Image
    return np.asarray(Image.open(path)).astype(np.int16)


def _assert_same_png(got, want):
    """Equal colour maps; a pixel on a colour-bin edge may fall one bin over (rounding)."""
    assert got.shape == want.shape
    diff = np.abs(got - want).max(axis=2)
    assert np.mean(diff > 0) < 0.01 and diff.max() <= 4


@pytest.mark.slow
@pytest.mark.parametrize("kind,fmt", [("disp", "paddle"), ("metric", "onnx")])
def test_folder_writes_the_files_of_test_simple(model, image_folder, simple_outputs, tmp_path,
                                                capsys, kind, fmt):
    if fmt == "onnx":
        pytest.importorskip("paddle2onnx")
        pytest.importorskip("onnxruntime")
    prefix = _export(model, tmp_path, kind, fmt)
    capsys.readouterr()
    out = tmp_path / "out"
    assert infer_exported.main(["--model", prefix, "--image_path", str(image_folder), "--ext",
                                "png", "--output_dir", str(out), "--batch_size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "images/s end to end" in printed and "images/s in the model" in printed
    npy_suffix = "_disp.npy" if kind == "disp" else "_depth.npy"
    assert sorted(os.listdir(out)) == sorted(n + s for n, _ in IMAGES for s in ("_disp.png", npy_suffix))
    for name, (h, w) in IMAGES:
        got = np.load(out / f"{name}{npy_suffix}")
        want = np.load(simple_outputs / f"{name}{npy_suffix}")
        assert got.shape == want.shape == (1, 1, H, W) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        png = _png(out / f"{name}_disp.png")
        assert png.shape == (h, w, 3)
        _assert_same_png(png, _png(simple_outputs / f"{name}_disp.png"))


@pytest.mark.slow
def test_other_size_and_errors(model, image_folder, tmp_path, capsys):
    prefix = _export(model, tmp_path, "depth", "paddle")
    image = str(image_folder / "a.png")
    out = tmp_path / "o"
    # one file, the model prefix given as one of its files, another multiple of 32
    assert infer_exported.main(["--model", prefix + ".json", "--image_path", image,
                                "--output_dir", str(out), "--height", "96", "--width", "128"]) == 0
    assert np.load(out / "a_depth.npy").shape == (1, 1, 96, 128)
    capsys.readouterr()
    assert infer_exported.main(["--model", prefix, "--image_path", image, "--height", "100"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a multiple of 32" in err and "--height/--width" in err
    assert infer_exported.main(["--model", str(tmp_path / "nope"), "--image_path", image]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no exported model at") and "_export.json missing" in err
    (tmp_path / "a_file").write_text("x")
    assert infer_exported.main(["--model", prefix, "--image_path", image, "--output_dir",
                                str(tmp_path / "a_file" / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--output_dir" in err and "is a file" in err
    # an unreadable image in a folder is reported and skipped; the others are written, exit 1
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(image, mixed / "a.png")
    (mixed / "b.png").write_bytes(b"not a png")
    shutil.copy(image, mixed / "c.png")
    assert infer_exported.main(["--model", prefix, "--image_path", str(mixed), "--ext", "png",
                                "--batch_size", "2"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "b.png" in err[0] and err[0].endswith("; skipped")
    assert err[1].startswith("error: 1 of 3 image(s) could not be read")
    assert sorted(n for n in os.listdir(mixed) if n.endswith(".npy")) == ["a_depth.npy", "c_depth.npy"]


def test_cli_exit_code(tmp_path):
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "infer_exported.py"),
                          "--model", str(tmp_path / "nope"), "--image_path", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert res.returncode == 2 and res.stderr.startswith("error: no exported model at")


@pytest.mark.slow
def test_degenerate_images_skipped_and_test_simple_outputs_announced(model, image_folder, tmp_path, capsys):
    """In place next to test_simple.py's outputs: one warning line (the first file, the count);
    1x1 and Nx1 images are one line each and skipped, the summary counts them, exit code 1."""
    from PIL import Image
    prefix = _export(model, tmp_path, "metric", "paddle")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(image_folder / "a.png", folder / "a.png")
    shutil.copy(image_folder / "b.png", folder / "b.png")
    assert test_simple.main(["--image_path", str(folder), "--ext", "png", "--model_path", model,
                             "--pred_metric_depth", "--device", "cpu"]) == 0
    before = {n: (folder / n).read_bytes() for n in ("a_depth.npy", "b_depth.npy")}
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "c.png")
    Image.fromarray(np.zeros((3, 1, 3), np.uint8)).save(folder / "d.png")
    capsys.readouterr()
    assert infer_exported.main(["--model", prefix, "--image_path", str(folder), "--ext", "png",
                                "--batch_size", "2"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4, err
    assert err[0] == (f"warning: 4 existing output file(s) in {folder} will be overwritten (first: "
                      f"{folder / 'a_disp.png'}); write elsewhere with --output_dir to keep them")
    assert "c.png" in err[1] and "degenerate image" in err[1] and err[1].endswith("; skipped")
    assert "d.png" in err[2] and "1x3 pixels" in err[2]
    assert err[3].startswith("error: 2 of 4 image(s) could not be read (first: ")
    assert sorted(os.listdir(folder)) == ["a.png", "a_depth.npy", "a_disp.png", "b.png", "b_depth.npy",
                                          "b_disp.png", "c.png", "d.png"]
    for n, data in before.items():  # the same weights: the same metric depth as test_simple's
        np.testing.assert_allclose(np.load(folder / n), np.load(io.BytesIO(data)), rtol=1e-4, atol=1e-5)
