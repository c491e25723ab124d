"""tools/convert_torch_weights.py round trip (the comparisons with PyTorch are skipped without it).

The converter itself needs no PyTorch (it reads .pth files with safe_load.load_torch): it is
run with `import torch` made to fail on the committed fixtures. A Monodepth2-style PyTorch depth net and pose net (tools/torch_reference.py: plain torch
written from docs/METHOD.md, section 2, with Monodepth2's parameter names), randomly
initialised (BatchNorm statistics too), are saved as encoder.pth/depth.pth/pose_encoder.pth/
pose.pth, converted and loaded into this toolkit's networks; both must compute the same
outputs in eval mode.
"""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

import networks
import safe_load
from tools import convert_torch_weights as ctw

try:
    import torch
    from tools.torch_reference import TDepthDecoder, TEncoder, TPoseDecoder, TResNet18, randomise_bn
except Exception:  # noqa: BLE001  (not installed, or a broken install)
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (only the comparisons need it)")


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1)
    enc, dec = TEncoder(), TDepthDecoder()
    penc, pdec = TEncoder(in_ch=6), TPoseDecoder()
    for m in (enc, dec, penc, pdec):
        randomise_bn(m, gen)
        m.eval()
    folder = tmp_path_factory.mktemp("torch_model")
    state = enc.state_dict()
    state.update(height=64, width=128, use_stereo=True)
    torch.save(state, str(folder / "encoder.pth"))
    torch.save(dec.state_dict(), str(folder / "depth.pth"))
    torch.save(penc.state_dict(), str(folder / "pose_encoder.pth"))
    torch.save(pdec.state_dict(), str(folder / "pose.pth"))
    return folder, enc, dec, penc, pdec


@needs_torch
@pytest.mark.slow
def test_converted_monodepth2_folder_gives_same_outputs(torch_models, tmp_path):
    folder, enc, dec, penc, pdec = torch_models
    out_dir = tmp_path / "paddle_model"
    written = ctw.convert(str(folder), str(out_dir))
    assert sorted(os.path.basename(p) for p in written) == [
        "depth.pdparams", "encoder.pdparams", "pose.pdparams", "pose_encoder.pdparams"]

    enc_state = paddle.load(str(out_dir / "encoder.pdparams"))
    assert (enc_state["height"], enc_state["width"], enc_state["use_stereo"]) == (64, 128, True)
    assert not any("num_batches_tracked" in k or "running_" in k for k in enc_state)
    np.testing.assert_array_equal(enc_state["encoder.layer2.0.downsample.1._variance"],
                                  enc.encoder.layer2[0].downsample[1].running_var.numpy())
    np.testing.assert_array_equal(enc_state["encoder.fc.weight"], enc.encoder.fc.weight.detach().numpy().T)

    p_enc = networks.ResnetEncoder(18, False)
    p_dec = networks.DepthDecoder(p_enc.num_ch_enc)
    networks.load_state_dict_strict(p_enc, str(out_dir / "encoder.pdparams"))
    networks.load_state_dict_strict(p_dec, str(out_dir / "depth.pdparams"), "depth.pdparams")
    p_enc.eval()
    p_dec.eval()

    x = np.random.RandomState(0).rand(2, 3, 64, 128).astype(np.float32)
    with torch.no_grad():
        t_out = dec(enc(torch.from_numpy(x)))
    with paddle.no_grad():
        p_out = p_dec(p_enc(paddle.to_tensor(x)))
    for s in range(4):
        t = t_out[("disp", s)].numpy()
        p = p_out[("disp", s)].numpy()
        assert p.shape == t.shape == (2, 1, 64 >> s, 128 >> s)
        assert t.std() > 1e-3  # the comparison is not between constants
        np.testing.assert_allclose(p, t, atol=1e-4)

    # Pose: encoder on a stacked pair (6 channels) + decoder predicting 2 frames.
    p_penc = networks.ResnetEncoder(18, False, num_input_images=2)
    p_pdec = networks.PoseDecoder(p_penc.num_ch_enc, 1, 2)
    networks.load_state_dict_strict(p_penc, str(out_dir / "pose_encoder.pdparams"))
    networks.load_state_dict_strict(p_pdec, str(out_dir / "pose.pdparams"), "pose.pdparams")
    p_penc.eval()
    p_pdec.eval()
    pair = np.random.RandomState(1).rand(2, 6, 64, 128).astype(np.float32)
    with torch.no_grad():
        t_aa, t_tr = pdec(penc(torch.from_numpy(pair)))
    with paddle.no_grad():
        p_aa, p_tr = p_pdec([p_penc(paddle.to_tensor(pair))])
    np.testing.assert_allclose(p_aa.numpy(), t_aa.numpy(), atol=1e-6)
    np.testing.assert_allclose(p_tr.numpy(), t_tr.numpy(), atol=1e-6)


@needs_torch
@pytest.mark.slow
def test_torchvision_resnet_file_converts_and_loads(tmp_path):
    torch.manual_seed(2)
    net = TResNet18()
    randomise_bn(net, torch.Generator().manual_seed(3))
    net.eval()
    src = tmp_path / "resnet18-0123abcd.pth"
    torch.save(net.state_dict(), str(src))
    weights = tmp_path / "weights"
    weights.mkdir()
    assert ctw.main(["--input", str(src), "--output", str(weights / "resnet18.pdparams")]) == 0
    out = str(weights / "resnet18.pdparams")
    assert ctw.convert(str(src), str(weights) + os.sep) == [out]  # folder form names it too
    state = paddle.load(out)
    assert "encoder.conv1.weight" in state and "encoder.bn1._mean" in state
    assert state["encoder.fc.weight"].shape == (512, 1000)

    # Used as ImageNet init for a depth encoder and a 2-image pose encoder.
    p_enc = networks.ResnetEncoder(18, str(weights))
    p_enc.eval()
    x = np.random.RandomState(2).rand(1, 3, 64, 96).astype(np.float32)
    t_enc = TEncoder()
    t_enc.encoder = net
    with torch.no_grad():
        t_feats = t_enc(torch.from_numpy(x))
    with paddle.no_grad():
        p_feats = p_enc(paddle.to_tensor(x))
    for t, p in zip(t_feats, p_feats):
        np.testing.assert_allclose(p.numpy(), t.numpy(), atol=1e-4, rtol=1e-4)
    pose_enc = networks.ResnetEncoder(18, out, num_input_images=2)
    np.testing.assert_allclose(pose_enc.encoder.conv1.weight.numpy()[:, 3:],
                               net.conv1.weight.detach().numpy() / 2, rtol=1e-6)


def test_cli_errors_exit_2(tmp_path, repo_root):
    (tmp_path / "empty").mkdir()
    script = os.path.join(repo_root, "tools", "convert_torch_weights.py")
    res = subprocess.run([sys.executable, script, "--input", str(tmp_path / "empty"),
                          "--output", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "error: no Monodepth2 weights in" in res.stderr and "encoder.pth" in res.stderr
    res = subprocess.run([sys.executable, script, "--input", str(tmp_path / "empty")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--output" in res.stderr


def test_converter_runs_with_torch_blocked(tmp_path, repo_root):
    """With `import torch` failing, the committed fixtures (zip and legacy format, written by
    torch: tools/make_torch_fixtures.py) convert to what torch holds in them."""
    fixtures = os.path.join(repo_root, "tests", "fixtures")
    expected = dict(np.load(os.path.join(fixtures, "torch_expected.npz")))
    script = os.path.join(repo_root, "tools", "convert_torch_weights.py")
    for name in ("torch_zip.pth", "torch_legacy.pth"):
        out = str(tmp_path / (name + ".pdparams"))
        driver = ("import runpy, sys; sys.modules['torch'] = None; "  # any `import torch` raises ImportError
                  f"sys.argv = [{script!r}, '--input', {os.path.join(fixtures, name)!r}, '--output', {out!r}]; "
                  "runpy.run_path(sys.argv[0], run_name='__main__')")
        res = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        got = safe_load.load_paddle(out)
        assert "encoder.bn1.num_batches_tracked" not in got and "encoder.bn1.running_mean" not in got
        np.testing.assert_array_equal(got["encoder.bn1._mean"], expected["encoder.bn1.running_mean"])
        for key in ("encoder.conv1.weight", "view", "transposed", "index", "mask", "int8", "bfloat16"):
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        assert got["half"].dtype == np.float32 and np.array_equal(got["half"], expected["half"].astype(np.float32))
        assert (got["height"], got["width"], got["use_stereo"]) == (192, 640, False)


@needs_torch
def test_reads_like_torch_load_in_both_formats(torch_models, tmp_path):
    """The converter reads .pth files with safe_load (no torch); what it writes is torch.load's
    tensors under Paddle's names, for the zip format and the legacy format of torch < 1.6."""
    import safe_load
    folder = torch_models[0]
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ctw.MODEL_FILES:
        torch.save(torch.load(str(folder / f"{name}.pth"), weights_only=True), str(legacy / f"{name}.pth"),
                   _use_new_zipfile_serialization=False)
    for src in (folder, legacy):
        out = tmp_path / (src.name + "_paddle")
        ctw.convert(str(src), str(out), check=False)
        for name in ctw.MODEL_FILES:
            ref = torch.load(str(src / f"{name}.pth"), weights_only=True)
            got = safe_load.load_paddle(str(out / f"{name}.pdparams"))
            expected = {}
            for key, value in ref.items():
                if key.endswith("num_batches_tracked"):
                    continue
                if not isinstance(value, torch.Tensor):
                    expected[key] = value
                    continue
                arr = value.detach().float().numpy()
                if arr.ndim == 2:
                    arr = arr.T
                key = key.replace(".running_mean", "._mean").replace(".running_var", "._variance")
                expected[key] = arr
            assert sorted(got) == sorted(expected), name
            for key, value in expected.items():
                np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(value), err_msg=f"{name} {key}")

