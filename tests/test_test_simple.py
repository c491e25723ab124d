"""test_simple.py: a folder of images -> colour-mapped PNG + .npy per image (known shapes and
values from the same network), metric depth only for stereo models, own outputs skipped."""
import errno
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 64, 96  # network resolution recorded in encoder.pdparams


@pytest.fixture
def save_model(save_untrained_depth_model):
    """``save_model(folder, use_stereo, seed=0)``: an untrained model folder at H x W."""
    return lambda folder, use_stereo, seed=0: save_untrained_depth_model(folder, H, W, use_stereo=use_stereo,
                                                                        seed=seed)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    from PIL import Image
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for name, (h, w) in (("a", (50, 70)), ("b", (40, 90))):
        img = (rng.uniform(0, 255, (h, w, 3))).astype(np.uint8)
        Image.fromarray(img).save(d / f"{name}.png")
    return d


@pytest.mark.slow
def test_folder_writes_png_and_npy(image_folder, tmp_path, save_model):
    import paddle
    from PIL import Image
    from layers import disp_to_depth
    import test_simple
    enc, dec = save_model(str(tmp_path / "mono"), use_stereo=False)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "test_simple.py"), "--image_path",
                        str(image_folder), "--ext", "png", "--model_path", str(tmp_path / "mono"),
                        "--output_dir", str(out), "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    # stdout and stderr are pipes: no tqdm carriage returns, a status line with rate and ETA
    assert "\r" not in r.stdout and "\r" not in r.stderr
    assert re.search(r"^predict 2/2 img \(100\.0 %\) \| [0-9.]+ img/s \| elapsed \S+ \| ETA \S+$", r.stderr,
                     re.M), r.stderr
    assert sorted(os.listdir(out)) == ["a_disp.npy", "a_disp.png", "b_disp.npy", "b_disp.png"]
    for name, (h, w) in (("a", (50, 70)), ("b", (40, 90))):
        png = np.asarray(Image.open(out / f"{name}_disp.png"))
        assert png.shape == (h, w, 3) and png.dtype == np.uint8
        npy = np.load(out / f"{name}_disp.npy")
        assert npy.shape == (1, 1, H, W) and npy.dtype == np.float32
        _, image = test_simple.load_image(str(image_folder / f"{name}.png"), W, H)
        with paddle.no_grad():
            disp = dec(enc(paddle.to_tensor(image)))[("disp", 0)].numpy()
        expected, _ = disp_to_depth(disp, 0.1, 100)
        np.testing.assert_allclose(npy, expected, rtol=1e-4, atol=1e-6)
        assert 0.01 <= npy.min() and npy.max() <= 10.0
        # magma, 95th percentile: the darkest colour is magma(0) (near black)
        assert png.reshape(-1, 3).sum(1).min() < 30


@pytest.mark.slow
def test_metric_depth_stereo_only(image_folder, tmp_path, capsys, save_model):
    import test_simple
    save_model(str(tmp_path / "mono"), use_stereo=False)
    save_model(str(tmp_path / "stereo"), use_stereo=True)
    img = str(image_folder / "a.png")
    rc = test_simple.main(["--image_path", img, "--model_path", str(tmp_path / "mono"),
                           "--pred_metric_depth", "--output_dir", str(tmp_path / "o1")])
    assert rc == 2
    assert "stereo-trained model" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o1" / "a_depth.npy")
    rc = test_simple.main(["--image_path", img, "--model_path", str(tmp_path / "stereo"),
                           "--pred_metric_depth", "--output_dir", str(tmp_path / "o2")])
    assert rc == 0
    depth = np.load(tmp_path / "o2" / "a_depth.npy")
    assert depth.shape == (1, 1, H, W)
    # 5.4 * depth with depth in [0.1, 100]
    assert depth.min() >= 0.54 - 1e-4 and depth.max() <= 540 + 1e-3
    rc = test_simple.main(["--image_path", img, "--model_path", str(tmp_path / "stereo"),
                           "--output_dir", str(tmp_path / "o2")])
    assert rc == 0
    disp = np.load(tmp_path / "o2" / "a_disp.npy")
    np.testing.assert_allclose(depth, 5.4 / disp, rtol=1e-4)


@pytest.mark.slow
def test_skips_own_outputs_and_clear_errors(image_folder, tmp_path, capsys, save_model):
    import shutil
    import test_simple
    folder = tmp_path / "in"
    shutil.copytree(image_folder, folder)
    save_model(str(tmp_path / "m"), use_stereo=False)
    assert test_simple.main(["--image_path", str(folder), "--ext", "png",
                             "--model_path", str(tmp_path / "m")]) == 0
    # second run in place: the *_disp.png written by the first run are not inputs
    paths, _ = test_simple.list_images(str(folder), "png")
    assert [os.path.basename(p) for p in paths] == ["a.png", "b.png"]
    assert test_simple.main(["--image_path", str(folder), "--ext", "png",
                             "--model_path", str(tmp_path / "m")]) == 0
    assert not any("disp_disp" in f for f in os.listdir(folder))
    capsys.readouterr()
    assert test_simple.main(["--image_path", str(folder), "--ext", "jpg",
                             "--model_path", str(tmp_path / "m")]) == 2
    assert "--ext" in capsys.readouterr().err
    assert test_simple.main(["--image_path", str(folder), "--ext", "png",
                             "--model_path", str(tmp_path / "none")]) == 2
    assert "weights folder not found" in capsys.readouterr().err


@pytest.mark.slow
def test_decoder_trained_with_one_scale(image_folder, tmp_path):
    """A model trained with --scales 0 (one disparity conv) loads and predicts."""
    import paddle
    import networks
    import test_simple
    enc = networks.ResnetEncoder(18, False)
    dec = networks.DepthDecoder(enc.num_ch_enc, scales=range(1))
    folder = tmp_path / "s0"
    folder.mkdir()
    state = dict(enc.state_dict())
    state.update(height=H, width=W, use_stereo=False)
    paddle.save(state, str(folder / "encoder.pdparams"))
    paddle.save(dec.state_dict(), str(folder / "depth.pdparams"))
    assert test_simple.main(["--image_path", str(image_folder / "b.png"), "--model_path", str(folder),
                             "--output_dir", str(tmp_path / "o")]) == 0
    assert np.load(tmp_path / "o" / "b_disp.npy").shape == (1, 1, H, W)


def _save(path, array, mode=None):
    from PIL import Image
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


@pytest.mark.slow
def test_degenerate_and_unreadable_images_are_skipped(image_folder, tmp_path, capsys, save_model):
    """1x1, Nx1 and 1xN images and a file that does not decode: one line each, skipped, the
    closing summary counts them, exit code 1; the others get both files, and no .npy is
    ever without its PNG."""
    import shutil
    import test_simple
    folder = tmp_path / "in"
    shutil.copytree(image_folder, folder)
    for name, (h, w) in (("c_1x1", (1, 1)), ("d_5x1", (5, 1)), ("e_1x7", (1, 7))):
        _save(folder / f"{name}.png", np.full((h, w, 3), 200, np.uint8))
    (folder / "f_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    save_model(str(tmp_path / "m"), use_stereo=False)
    out = tmp_path / "out"
    rc = test_simple.main(["--image_path", str(folder), "--ext", "png", "--model_path", str(tmp_path / "m"),
                           "--output_dir", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 5, err
    for ln, name in zip(errors, ("c_1x1", "d_5x1", "e_1x7", "f_broken")):
        assert str(folder / f"{name}.png") in ln and ln.endswith("; skipped"), ln
    assert "degenerate image" in errors[0] and "1x1 pixels" in errors[0] and "1x5 pixels" in errors[1]
    assert "cannot decode image" in errors[3]
    assert errors[4].startswith("error: 4 of 6 image(s) could not be read (first: ") and "c_1x1.png" in errors[4]
    assert sorted(os.listdir(out)) == ["a_disp.npy", "a_disp.png", "b_disp.npy", "b_disp.png"]


def test_the_files_of_an_image_are_written_together(tmp_path, monkeypatch):
    """A write that fails half way (here the second file's sync) leaves neither file and no
    temp file, and is one line naming the folder and --output_dir."""
    import test_simple
    from utils import ToolkitError
    out = tmp_path / "out"
    out.mkdir()
    files = {str(out / "a_disp.png"): b"png", str(out / "a_disp.npy"): b"npy"}
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ToolkitError) as info:
        test_simple.write_together(files)
    msg = str(info.value)
    assert "\n" not in msg and f"into {out} (--output_dir)" in msg and "No space left on device" in msg
    assert os.listdir(out) == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert test_simple.write_together(files) == list(files)
    assert sorted(os.listdir(out)) == ["a_disp.npy", "a_disp.png"] and (out / "a_disp.npy").read_bytes() == b"npy"
    mask = os.umask(0)
    os.umask(mask)
    assert (out / "a_disp.png").stat().st_mode & 0o777 == 0o666 & ~mask  # as open() makes it, not mkstemp's 0600


@pytest.mark.slow
def test_sixteen_bit_png_gives_the_depth_of_its_8_bit_twin(tmp_path, save_model):
    """16-bit greyscale and RGB PNGs (value x * 257) predict exactly what their 8-bit twins do."""
    import cv2
    import test_simple
    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    folder = tmp_path / "in"
    folder.mkdir()
    _save(folder / "grey8.png", grey)
    assert cv2.imwrite(str(folder / "grey16.png"), grey.astype(np.uint16) * 257)
    _save(folder / "rgb8.png", rgb)
    assert cv2.imwrite(str(folder / "rgb16.png"), (rgb.astype(np.uint16) * 257)[:, :, ::-1])  # cv2 writes BGR
    from PIL import Image
    assert Image.open(folder / "grey16.png").mode.startswith("I")
    save_model(str(tmp_path / "m"), use_stereo=True)
    out = tmp_path / "out"
    for extra in ([], ["--pred_metric_depth"]):
        assert test_simple.main(["--image_path", str(folder), "--ext", "png", "--model_path", str(tmp_path / "m"),
                                 "--output_dir", str(out), "--device", "cpu"] + extra) == 0
    for kind in ("rgb", "grey"):
        for suffix in ("_disp.npy", "_depth.npy"):
            np.testing.assert_array_equal(np.load(out / f"{kind}16{suffix}"), np.load(out / f"{kind}8{suffix}"))
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{kind}16_disp.png")),
                                      np.asarray(Image.open(out / f"{kind}8_disp.png")))
    assert not np.array_equal(np.load(out / "rgb8_disp.npy"), np.load(out / "grey8_disp.npy"))


@pytest.mark.slow
def test_overwriting_earlier_outputs_is_one_warning(image_folder, tmp_path, capsys, save_model):
    import shutil
    import test_simple
    folder = tmp_path / "in"
    shutil.copytree(image_folder, folder)
    save_model(str(tmp_path / "m"), use_stereo=False)
    args = ["--image_path", str(folder), "--ext", "png", "--model_path", str(tmp_path / "m"), "--device", "cpu"]
    assert test_simple.main(args) == 0
    assert "warning" not in capsys.readouterr().err  # nothing there before the first run
    assert test_simple.main(args) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning:")]
    assert warnings == [f"warning: 4 existing output file(s) in {folder} will be overwritten (first: "
                        f"{folder / 'a_disp.png'}); write elsewhere with --output_dir to keep them"]
    out = tmp_path / "out"
    assert test_simple.main(args + ["--output_dir", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert test_simple.main(args + ["--output_dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "choose another --output_dir to keep them" in err
