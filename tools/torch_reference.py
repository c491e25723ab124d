"""Monodepth2's depth and pose networks in plain PyTorch, with Monodepth2's parameter names.

Written from the description in docs/METHOD.md (section 2) after Godard et al., "Digging
Into Self-Supervised Monocular Depth Estimation" (ICCV 2019): a torchvision-named ResNet18
encoder (input normalised as (x - 0.45) / 0.225), the depth decoder (reflection-padded 3x3
convolutions, ELU, nearest upsampling, sigmoid disparities) and the pose decoder. The
weight-conversion test (tests/test_convert_torch.py) checks that converted weights give the
same outputs in this toolkit's networks; bench/inference.py times the depth net as the
PyTorch eager reference. Needs PyTorch (``pip install torch``), imported with this module.
"""
import collections

import torch
import torch.nn as tnn

__all__ = ["TBasicBlock", "TResNet18", "TEncoder", "TConv3x3", "TConvBlock", "TDepthDecoder",
           "TPoseDecoder", "randomise_bn"]


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


def randomise_bn(module, gen):
    """Random BatchNorm affine parameters and running statistics (so that eval-mode
    outputs depend on them), drawn from ``gen`` (a torch.Generator)."""
    for m in module.modules():
        if isinstance(m, tnn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) * 0.5 + 0.75
            m.bias.data = torch.randn(c, generator=gen) * 0.1
            m.running_mean.data = torch.randn(c, generator=gen) * 0.1
            m.running_var.data = torch.rand(c, generator=gen) + 0.5
            m.num_batches_tracked.fill_(7)
