"""Monodepth2 depth decoder (docs/METHOD.md, section 2). All convolutions live in one LayerList ``decoder`` in
Monodepth2's construction order: upconv(4,0), upconv(4,1), upconv(3,0), ..., upconv(0,1), then dispconv(s) per scale (14
for 4 scales); a ConvBlock's weights are ``decoder.k.conv.conv.*``, a dispconv's ``decoder.k.conv.*``. Every
convolution's input is padded by the attributes ``reflection_pad1`` and ``upsample_pad1`` (layers' functions), which the
export replaces on an instance with traced forms of the same values (export_ops.py).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from layers import Conv3x3, ConvBlock, reflection_pad1, upsample_pad1

from .initializers import init_conv_torch_default

NUM_CH_DEC = (16, 32, 64, 128, 256)


class DepthDecoder(nn.Layer):
    """Returns ``{("disp", s): sigmoid(dispconv_s(x_s))}`` with shape (B, C, H/2^s, W/2^s)."""

    reflection_pad1 = staticmethod(reflection_pad1)
    upsample_pad1 = staticmethod(upsample_pad1)

    def __init__(self, num_ch_enc, scales=range(4), num_output_channels=1, use_skips=True):
        super().__init__()
        self.scales = list(scales)
        self.use_skips = use_skips
        enc, dec = [int(c) for c in num_ch_enc], NUM_CH_DEC
        convs = {}  # in construction order
        for i in range(4, -1, -1):
            convs[("upconv", i, 0)] = ConvBlock(enc[-1] if i == 4 else dec[i + 1], dec[i])
            convs[("upconv", i, 1)] = ConvBlock(dec[i] + (enc[i - 1] if use_skips and i > 0 else 0), dec[i])
        for s in self.scales:
            convs[("dispconv", s)] = Conv3x3(dec[s], num_output_channels)
        self._index = {key: k for k, key in enumerate(convs)}
        self.decoder = nn.LayerList(list(convs.values()))
        init_conv_torch_default(self)

    def conv(self, key):
        """The layer Monodepth2 calls ``self.convs[key]``, e.g. ``("upconv", 4, 0)``."""
        return self.decoder[self._index[key]]

    def forward(self, input_features):
        outputs = {}
        x = input_features[-1]
        for i in range(4, -1, -1):
            x = self.conv(("upconv", i, 0))(self.reflection_pad1(x), padded=True)
            # reflect(concat(up(x), skip)) = concat(reflect(up(x)), reflect(skip)), and upsampling and
            # padding in one gather is ~2x faster on CPU
            x = self.upsample_pad1(x)
            if self.use_skips and i > 0:
                x = paddle.concat([x, self.reflection_pad1(input_features[i - 1])], axis=1)
            x = self.conv(("upconv", i, 1))(x, padded=True)
            if i in self.scales:
                outputs[("disp", i)] = F.sigmoid(self.conv(("dispconv", i))(self.reflection_pad1(x), padded=True))
        return outputs
