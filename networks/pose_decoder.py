"""Monodepth2 pose decoder (docs/METHOD.md, section 2): ``net.0`` squeeze, ``net.1..3`` pose convs."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .initializers import init_conv_torch_default


class PoseDecoder(nn.Layer):
    """Per input feature list: 1x1 squeeze enc[-1] -> 256 + ReLU, concatenated; 3x3 -> 256, ReLU, 3x3 -> 256, ReLU,
    1x1 -> 6F; spatial mean, x0.01. ``forward(feature lists) -> (axisangle, translation)``, each (B, F, 1, 3)."""

    def __init__(self, num_ch_enc, num_input_features, num_frames_to_predict_for=None):
        super().__init__()
        if num_frames_to_predict_for is None:
            num_frames_to_predict_for = num_input_features - 1
        self.num_frames_to_predict_for = num_frames_to_predict_for
        self.net = nn.LayerList([
            nn.Conv2D(int(num_ch_enc[-1]), 256, 1),                                  # squeeze
            nn.Conv2D(num_input_features * 256, 256, 3, padding=1),                  # pose 0
            nn.Conv2D(256, 256, 3, padding=1),                                       # pose 1
            nn.Conv2D(256, 6 * num_frames_to_predict_for, 1),                        # pose 2
        ])
        init_conv_torch_default(self)

    def forward(self, input_features):
        out = paddle.concat([F.relu(self.net[0](f[-1])) for f in input_features], axis=1)
        for i in (1, 2):
            out = F.relu(self.net[i](out))
        out = self.net[3](out).mean(axis=[2, 3])
        out = 0.01 * out.reshape([-1, self.num_frames_to_predict_for, 1, 6])
        return out[..., :3], out[..., 3:]
