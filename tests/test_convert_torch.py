"""tools/convert_torch_weights.py round trip (skipped without PyTorch).

A Monodepth2-style PyTorch depth net and pose net (tools/torch_reference.py: plain torch
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

torch = pytest.importorskip("torch")

import networks  # noqa: E402
from tools import convert_torch_weights as ctw  # noqa: E402
from tools.torch_reference import (  # noqa: E402
    TDepthDecoder, TEncoder, TPoseDecoder, TResNet18, randomise_bn)


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
