"""Every CPU kernel (cpu_kernels.py) equals its plain twin in layers.py: values and
gradients, with the switch on and off."""
import numpy as np
import paddle
import pytest

import cpu_kernels
import layers


def _tensor(shape, seed, grad=True):
    x = paddle.to_tensor(np.random.RandomState(seed).rand(*shape).astype("float32"))
    x.stop_gradient = not grad
    return x


def _run(fn, inputs, params=()):
    """Value of fn(*inputs) and the gradients of sum(value * r) w.r.t. inputs and params."""
    for p in list(inputs) + list(params):
        p.clear_gradient() if p.grad is not None else None
    out = fn(*inputs)
    r = paddle.to_tensor(np.random.RandomState(99).rand(*out.shape).astype("float32"))
    (out * r).sum().backward()
    grads = [p.grad.numpy().copy() for p in list(inputs) + list(params)]
    return out.numpy(), grads


def _compare(fn, inputs, params=(), rtol=1e-5, atol=1e-6):
    fast = _run(fn, inputs, params)
    with cpu_kernels.disabled():
        assert not cpu_kernels.active(inputs[0])
        plain = _run(fn, inputs, params)
    np.testing.assert_allclose(fast[0], plain[0], rtol=rtol, atol=atol)
    for g_fast, g_plain in zip(fast[1], plain[1]):
        np.testing.assert_allclose(g_fast, g_plain, rtol=rtol, atol=atol)
    return fast, plain


def test_switch():
    x = _tensor([1, 1, 4, 4], 0)
    assert cpu_kernels.active(x)
    with cpu_kernels.disabled():
        assert not cpu_kernels.active(x)
    assert cpu_kernels.active(x)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 16, 12, 40)])
def test_reflection_pad1(shape):
    x = _tensor(shape, 1)
    (value, _), _ = _compare(layers.reflection_pad1, [x], atol=0)
    np.testing.assert_array_equal(value, np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), "reflect"))


def test_upsample_and_upsample_pad1():
    x = _tensor((2, 4, 6, 9), 2)
    (value, _), _ = _compare(layers.upsample, [x], atol=0)
    np.testing.assert_array_equal(value, x.numpy().repeat(2, 2).repeat(2, 3))
    (value, _), _ = _compare(layers.upsample_pad1, [x], atol=0)
    up = x.numpy().repeat(2, 2).repeat(2, 3)
    np.testing.assert_array_equal(value, np.pad(up, ((0, 0), (0, 0), (1, 1), (1, 1)), "reflect"))


@pytest.mark.parametrize("channels_out", [1, 16])
def test_conv3x3(channels_out):
    paddle.seed(3)
    conv = layers.Conv3x3(8, channels_out)
    x = _tensor((2, 8, 12, 20), 3)
    params = [conv.conv.weight, conv.conv.bias]
    _compare(conv, [x], params, rtol=1e-4, atol=1e-5)
    padded = _tensor((2, 8, 14, 22), 4)
    _compare(lambda p: conv(p, padded=True), [padded], params, rtol=1e-4, atol=1e-5)


def test_mean_filter3():
    x = _tensor((2, 5, 9, 11), 5)
    (value, _), _ = _compare(layers.mean_filter3, [x])
    xn = x.numpy()
    expect = sum(xn[:, :, i:i + 7, j:j + 9] for i in range(3) for j in range(3)) / 9
    np.testing.assert_allclose(value, expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis", [2, 3])
def test_neighbour_diff(axis):
    x = _tensor((2, 1, 6, 8), 6)
    (value, _), _ = _compare(lambda t: layers.neighbour_diff(t, axis), [x], atol=0)
    np.testing.assert_array_equal(value, -np.diff(x.numpy(), axis=axis))


def test_losses_built_from_the_kernels():
    a = _tensor((2, 3, 16, 24), 7)
    b = _tensor((2, 3, 16, 24), 8, grad=False)
    # SSIM's E[x^2] - mu^2 cancellation amplifies float rounding: 1e-5 relative
    _compare(lambda x: layers.compute_reprojection_loss(x, b), [a], rtol=1e-4, atol=1e-5)
    stats = layers.reprojection_target_stats(b)
    _compare(lambda x: layers.compute_reprojection_loss(x, b, target_stats=stats), [a], rtol=1e-4, atol=1e-5)
    disp = _tensor((2, 1, 16, 24), 9)
    _compare(lambda d: layers.get_smooth_loss(d, b).reshape([1]), [disp])


def test_no_kernel_in_static_graph():
    seen = []

    def probe(x):
        seen.append(cpu_kernels.active(x))
        return x * 2

    static = paddle.jit.to_static(probe, input_spec=[paddle.static.InputSpec([1, 1, 4, 4], "float32")],
                                  full_graph=True)
    static(paddle.ones([1, 1, 4, 4]))
    assert seen and not any(seen)
