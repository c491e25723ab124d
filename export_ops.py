"""The depth decoder's padding and upsampling as the exported program computes them.

export_model.py traces the network inside :func:`traced_forms`, which sets these forms on
the decoder in place of its ``layers`` ops (``DepthDecoder.reflection_pad1`` and
``upsample_pad1``). They compute the same values; they only choose operators that the
deployment runtimes run well:

* Paddle Inference's oneDNN ``pad3d`` (reflect mode) takes longer than the 3x3 convolution
  it feeds; two concatenations take a fraction of it;
* ``interpolate`` stores its scale as an array of doubles, which Paddle Inference 3.3 cannot
  run with oneDNN, its default CPU config (PaddlePaddle/Paddle issue 79749); a tile can.
"""
import contextlib


def pad1_by_concat(x):
    """``layers.reflection_pad1``: mirrored rows, then columns (row 1 above row 0, row H-2
    below row H-1), for an NCHW tensor with H, W >= 2."""
    import paddle
    x = paddle.concat([x[:, :, 1:2], x, x[:, :, -2:-1]], axis=2)
    return paddle.concat([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], axis=3)


def upsample_by_tile(x):
    """``layers.upsample`` (nearest x2): every pixel repeated into a 2x2 block."""
    blocks = x.unsqueeze([3, 5]).tile([1, 1, 1, 2, 1, 2])  # (B, C, H, 2, W, 2)
    return blocks.flatten(4, 5).flatten(2, 3)


def upsample_pad1_by_tile(x):
    """``layers.upsample_pad1``: upsample_by_tile, then pad1_by_concat."""
    return pad1_by_concat(upsample_by_tile(x))


@contextlib.contextmanager
def traced_forms(decoder):
    """Within the block ``decoder`` (a ``networks.DepthDecoder``) pads and upsamples with the
    forms above; afterwards with its own ops again."""
    decoder.reflection_pad1, decoder.upsample_pad1 = pad1_by_concat, upsample_pad1_by_tile
    try:
        yield decoder
    finally:
        del decoder.reflection_pad1, decoder.upsample_pad1
