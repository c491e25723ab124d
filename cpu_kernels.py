"""Faster CPU twins of a few layers.py operations, with the same values and gradients (tests/test_cpu_kernels.py),
where Paddle's CPU kernel is several times slower than the same maths written differently (BENCHMARKS.md, "Training
step"). Each docstring names the layers.py function it mirrors; layers.py calls it when :func:`active`.
"""
import contextlib

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer

ENABLED = True  # the single switch (tests turn it off with :func:`disabled`)
_INDEX_CACHE = {}
_KERNEL_CACHE = {}


def active(x):
    """Whether the CPU kernels run for tensor ``x``."""
    return ENABLED and paddle.in_dynamic_mode() and x.place.is_cpu_place()


@contextlib.contextmanager
def disabled():
    """Run a block with the plain layers.py ops only (tests, comparisons)."""
    global ENABLED
    old, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = old


def _gather(x, kind, rows, cols):
    """x[:, :, rows][:, :, :, cols] as one gather of flat indices, cached per kind, size and place."""
    b, c, h, w = x.shape
    key = (kind, h, w, str(x.place))
    if key not in _INDEX_CACHE:
        flat = (rows[:, None] * w + cols[None, :]).reshape(-1).astype("int64")
        _INDEX_CACHE[key] = paddle.to_tensor(flat, place=x.place)
    out = paddle.gather(x.reshape([b * c, h * w]), _INDEX_CACHE[key], axis=1)
    return out.reshape([b, c, len(rows), len(cols)])


def reflection_pad1(x):
    """Twin of ``layers.reflection_pad1``: one gather of cached flat indices (Paddle's
    reflect-mode pad3d is slow on CPU, forward and backward). Needs H, W >= 2."""
    _, _, h, w = x.shape
    rows = np.concatenate([[1], np.arange(h), [h - 2]])
    cols = np.concatenate([[1], np.arange(w), [w - 2]])
    return _gather(x, "pad", rows, cols)


def upsample_pad1(x):
    """Twin of ``layers.upsample_pad1`` (nearest x2, then reflection pad 1) in one gather."""
    _, _, h, w = x.shape
    rows, cols = np.arange(2 * h) // 2, np.arange(2 * w) // 2
    rows = np.concatenate([[rows[1]], rows, [rows[-2]]])
    cols = np.concatenate([[cols[1]], cols, [cols[-2]]])
    return _gather(x, "up", rows, cols)


def add_channel_bias(y, bias):
    """``y + bias.reshape([1, C, 1, 1])`` as a (B*C, H*W) + (B*C, 1) add (Paddle's CPU add broadcasts
    [1, C, 1, 1] through a slow generic path). Twin of the conv bias in ``layers.Conv3x3``'s plain path."""
    b, c, h, w = y.shape
    bias = bias.reshape([1, c]).expand([b, c]).reshape([b * c, 1])
    return (y.reshape([b * c, h * w]) + bias).reshape([b, c, h, w])


class _ShiftSum3x3(PyLayer):
    """(B, 9, H+2, W+2) -> (B, 1, H, W): sum over taps t = 3*kh + kw of y[:, t, kh:kh+H, kw:kw+W]."""

    @staticmethod
    def forward(ctx, y):
        h, w = y.shape[2] - 2, y.shape[3] - 2
        out = y[:, 0:1, 0:h, 0:w]
        for t in range(1, 9):
            kh, kw = divmod(t, 3)
            out = out + y[:, t:t + 1, kh:kh + h, kw:kw + w]
        return out

    @staticmethod
    def backward(ctx, grad):
        h, w = grad.shape[2], grad.shape[3]
        gp = F.pad(grad, [2, 2, 2, 2])
        return paddle.concat([gp[:, :, 2 - kh:4 - kh + h, 2 - kw:4 - kw + w]
                              for kh, kw in (divmod(t, 3) for t in range(9))], axis=1)


class _TapsAs1x1(PyLayer):
    """3x3 kernel (1, C, 3, 3) -> the (9, C, 1, 1) kernel of its taps, t = 3*kh + kw. A PyLayer so that
    the weight gradient is contiguous (a transpose's backward is a strided view: all-reduce rejects it)."""

    @staticmethod
    def forward(ctx, w):
        c = w.shape[1]
        return w.reshape([c, 9]).transpose([1, 0]).contiguous().reshape([9, c, 1, 1])

    @staticmethod
    def backward(ctx, grad):
        c = grad.shape[1]
        return grad.reshape([9, c]).transpose([1, 0]).contiguous().reshape([1, c, 3, 3])


def conv3x3(x, weight, bias):
    """Twin of ``layers.Conv3x3``'s convolution of an already padded ``x`` ('valid' 3x3). One output
    channel (the disparity heads): a 1x1 convolution to the 9 taps plus a shifted sum, since Paddle's
    im2col costs nearly as much for one output as for sixteen. Bias by :func:`add_channel_bias`."""
    if weight.shape[0] == 1:
        y = _ShiftSum3x3.apply(F.conv2d(x, _TapsAs1x1.apply(weight)))
    else:
        y = F.conv2d(x, weight)
    return y if bias is None else add_channel_bias(y, bias)


class _BoxFilter3(PyLayer):
    """Depthwise 3x3 'valid' correlation with a constant symmetric kernel; backward: the same correlation
    with zero padding 2 (its adjoint), ~3x cheaper than Paddle's depthwise-convolution backward on CPU."""

    @staticmethod
    def forward(ctx, x, kernel):
        ctx.kernel = kernel
        return F.conv2d(x, kernel, groups=kernel.shape[0])

    @staticmethod
    def backward(ctx, grad):
        return F.conv2d(grad, ctx.kernel, padding=2, groups=ctx.kernel.shape[0])


def mean_filter3(padded):
    """Twin of ``layers.mean_filter3``: one depthwise convolution with weights 1/9."""
    c = padded.shape[1]
    key = (c, str(padded.dtype), str(padded.place))
    if key not in _KERNEL_CACHE:
        _KERNEL_CACHE[key] = paddle.full([c, 1, 3, 3], 1.0 / 9.0, dtype=padded.dtype)
    k = _KERNEL_CACHE[key]
    return F.conv2d(padded, k, groups=c) if padded.stop_gradient else _BoxFilter3.apply(padded, k)


def _diff(x, axis):
    n = x.shape[axis]
    return paddle.slice(x, [axis], [0], [n - 1]) - paddle.slice(x, [axis], [1], [n])


class _NeighbourDiff(PyLayer):
    """:func:`_diff` with a backward by two concats (Paddle's CPU slice backward fills a zero tensor per slice)."""

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        return _diff(x, axis)

    @staticmethod
    def backward(ctx, grad):
        axis = ctx.axis
        zero = paddle.zeros_like(paddle.slice(grad, [axis], [0], [1]))
        return paddle.concat([grad, zero], axis) - paddle.concat([zero, grad], axis)


def neighbour_diff(x, axis):
    """Twin of ``layers.neighbour_diff``: x[..., i] - x[..., i + 1] along ``axis`` (2 or 3)."""
    return _diff(x, axis) if x.stop_gradient else _NeighbourDiff.apply(x, axis)
