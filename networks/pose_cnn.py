"""Monodepth2's alternative pose network (docs/METHOD.md, section 2): ``net.0..6`` + ``pose_conv``."""
import paddle.nn as nn
import paddle.nn.functional as F

from .initializers import init_conv_torch_default

_CHANNELS = (16, 32, 64, 128, 256, 256, 256)
_KERNELS = (7, 5, 3, 3, 3, 3, 3)


class PoseCNN(nn.Layer):
    """Seven stride-2 convs + ReLU on the stacked frames (3N channels), 1x1 conv to 6(N-1), spatial mean, x0.01.
    ``forward(x) -> (axisangle, translation)``, each (B, N-1, 1, 3)."""

    def __init__(self, num_input_frames):
        super().__init__()
        self.num_input_frames = num_input_frames
        convs, num_in = [], 3 * num_input_frames
        for ch, k in zip(_CHANNELS, _KERNELS):
            convs.append(nn.Conv2D(num_in, ch, k, stride=2, padding=(k - 1) // 2))
            num_in = ch
        self.net = nn.LayerList(convs)
        self.pose_conv = nn.Conv2D(num_in, 6 * (num_input_frames - 1), 1)
        init_conv_torch_default(self)

    def forward(self, out):
        for conv in self.net:
            out = F.relu(conv(out))
        out = self.pose_conv(out).mean(axis=[2, 3])
        out = 0.01 * out.reshape([-1, self.num_input_frames - 1, 1, 6])
        return out[..., :3], out[..., 3:]
