"""tools/convert_torch_weights.py round trip (skipped without PyTorch).

A Monodepth2-style PyTorch depth net and pose net are built here in plain torch from the
the description in docs/METHOD.md (section 2) with Monodepth2's parameter names, randomly initialised (BatchNorm
statistics too), saved as encoder.pth/depth.pth/pose_encoder.pth/pose.pth, converted and
loaded into this toolkit's networks; both must compute the same outputs in eval mode.
"""
import collections
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

torch = pytest.importorskip("torch")
tnn = torch.nn

import networks  # noqa: E402
from tools import convert_torch_weights as ctw  # noqa: E402


class TBasicBlock(tnn.Module):
    def __init__(self, cin, c, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(c)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(c)
        self.downsample = None
        if stride != 1 or cin != c:
            self.downsample = tnn.Sequential(tnn.Conv2d(cin, c, 1, stride, bias=False),
                                             tnn.BatchNorm2d(c))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class TResNet18(tnn.Module):
    """ResNet18 with torchvision's attribute names (classifier included)."""

    def __init__(self, in_ch=3):
        super().__init__()
        self.conv1 = tnn.Conv2d(in_ch, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU()
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, c in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", tnn.Sequential(TBasicBlock(cin, c, stride),
                                                      TBasicBlock(c, c, 1)))
            cin = c
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(512, 1000)


class TEncoder(tnn.Module):
    def __init__(self, in_ch=3):
        super().__init__()
        self.encoder = TResNet18(in_ch)

    def forward(self, x):
        e = self.encoder
        x = (x - 0.45) / 0.225
        f = [e.relu(e.bn1(e.conv1(x)))]
        f.append(e.layer1(e.maxpool(f[-1])))
        for name in ("layer2", "layer3", "layer4"):
            f.append(getattr(e, name)(f[-1]))
        return f


class TConv3x3(tnn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.pad = tnn.ReflectionPad2d(1)
        self.conv = tnn.Conv2d(cin, cout, 3)

    def forward(self, x):
        return self.conv(self.pad(x))


class TConvBlock(tnn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = TConv3x3(cin, cout)
        self.nonlin = tnn.ELU(inplace=True)

    def forward(self, x):
        return self.nonlin(self.conv(x))


class TDepthDecoder(tnn.Module):
    def __init__(self, enc=(64, 64, 128, 256, 512), scales=range(4)):
        super().__init__()
        dec = (16, 32, 64, 128, 256)
        self.scales = list(scales)
        self.convs = collections.OrderedDict()
        for i in range(4, -1, -1):
            self.convs[("upconv", i, 0)] = TConvBlock(enc[-1] if i == 4 else dec[i + 1], dec[i])
            self.convs[("upconv", i, 1)] = TConvBlock(dec[i] + (enc[i - 1] if i > 0 else 0), dec[i])
        for s in self.scales:
            self.convs[("dispconv", s)] = TConv3x3(dec[s], 1)
        self.decoder = tnn.ModuleList(list(self.convs.values()))

    def forward(self, feats):
        out, x = {}, feats[-1]
        for i in range(4, -1, -1):
            x = [tnn.functional.interpolate(self.convs[("upconv", i, 0)](x), scale_factor=2,
                                            mode="nearest")]
            if i > 0:
                x.append(feats[i - 1])
            x = self.convs[("upconv", i, 1)](torch.cat(x, 1))
            if i in self.scales:
                out[("disp", i)] = torch.sigmoid(self.convs[("dispconv", i)](x))
        return out


class TPoseDecoder(tnn.Module):
    def __init__(self, nf=2):
        super().__init__()
        self.nf = nf
        self.convs = collections.OrderedDict()
        self.convs["squeeze"] = tnn.Conv2d(512, 256, 1)
        self.convs[("pose", 0)] = tnn.Conv2d(256, 256, 3, 1, 1)
        self.convs[("pose", 1)] = tnn.Conv2d(256, 256, 3, 1, 1)
        self.convs[("pose", 2)] = tnn.Conv2d(256, 6 * nf, 1)
        self.net = tnn.ModuleList(list(self.convs.values()))

    def forward(self, feats):
        out = torch.relu(self.convs["squeeze"](feats[-1]))
        for i in range(3):
            out = self.convs[("pose", i)](out)
            if i != 2:
                out = torch.relu(out)
        out = 0.01 * out.mean(3).mean(2).view(-1, self.nf, 1, 6)
        return out[..., :3], out[..., 3:]


def _randomise_bn(module, gen):
    for m in module.modules():
        if isinstance(m, tnn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) * 0.5 + 0.75
            m.bias.data = torch.randn(c, generator=gen) * 0.1
            m.running_mean.data = torch.randn(c, generator=gen) * 0.1
            m.running_var.data = torch.rand(c, generator=gen) + 0.5
            m.num_batches_tracked.fill_(7)


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1)
    enc, dec = TEncoder(), TDepthDecoder()
    penc, pdec = TEncoder(in_ch=6), TPoseDecoder()
    for m in (enc, dec, penc, pdec):
        _randomise_bn(m, gen)
        m.eval()
    folder = tmp_path_factory.mktemp("torch_model")
    state = enc.state_dict()
    state.update(height=64, width=128, use_stereo=True)
    torch.save(state, str(folder / "encoder.pth"))
    torch.save(dec.state_dict(), str(folder / "depth.pth"))
    torch.save(penc.state_dict(), str(folder / "pose_encoder.pth"))
    torch.save(pdec.state_dict(), str(folder / "pose.pth"))
    return folder, enc, dec, penc, pdec


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


def test_torchvision_resnet_file_converts_and_loads(tmp_path):
    torch.manual_seed(2)
    net = TResNet18()
    _randomise_bn(net, torch.Generator().manual_seed(3))
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
