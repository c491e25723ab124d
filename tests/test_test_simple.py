"""test_simple.py: a folder of images -> colour-mapped PNG + .npy per image (known shapes and
values from the same network), metric depth only for stereo models, own outputs skipped."""
import os
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
