"""Known-answer tests for the loss functions and metrics of layers.py (docs/METHOD.md,
sections 4 and 6): SSIM, photometric error, smoothness, masks, hint loss, depth errors."""
import math

import numpy as np
import paddle
import pytest

import layers


def t(a, dtype="float32", grad=False):
    x = paddle.to_tensor(np.asarray(a, dtype=dtype))
    x.stop_gradient = not grad
    return x


# ----------------------------------------------------------------------------- losses


def _numpy_ssim(x, y):
    """Textbook SSIM distance: reflect pad, five 3x3 means (float64)."""
    def pool(a):
        a = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)), "reflect")
        h, w = a.shape[2] - 2, a.shape[3] - 2
        return sum(a[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0
    mx, my = pool(x), pool(y)
    sx, sy, sxy = pool(x * x) - mx * mx, pool(y * y) - my * my, pool(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = (2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sx + sy + c2))
    return np.clip((1 - s) / 2, 0, 1)


def test_ssim_identical_constant_and_numpy():
    ssim = layers.SSIM()
    x = np.random.RandomState(0).rand(2, 3, 6, 8)
    assert np.abs(ssim(t(x), t(x)).numpy()).max() < 1e-6
    # constant a vs constant b: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = np.full((1, 1, 4, 5), 0.2), np.full((1, 1, 4, 5), 0.6)
    expect = (1 - 0.2401 / 0.4001) / 2  # 0.19995...
    np.testing.assert_allclose(ssim(t(a, "float64"), t(b, "float64")).numpy(), expect, rtol=1e-10)
    np.testing.assert_allclose(ssim(t(a), t(b)).numpy(), expect, atol=1e-4)
    y = np.random.RandomState(1).rand(2, 3, 6, 8)
    out = ssim(t(x, "float64"), t(y, "float64"))
    assert out.shape == [2, 3, 6, 8]
    np.testing.assert_allclose(out.numpy(), _numpy_ssim(x, y), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ssim(t(x), t(y)).numpy(), _numpy_ssim(x, y), atol=2e-5)


def test_reprojection_loss():
    rng = np.random.RandomState(0)
    p, q = rng.rand(2, 3, 5, 6), rng.rand(2, 3, 5, 6)
    out = layers.compute_reprojection_loss(t(p, "float64"), t(q, "float64")).numpy()
    expect = 0.85 * _numpy_ssim(p, q).mean(1, keepdims=True) + 0.15 * np.abs(p - q).mean(1, keepdims=True)
    assert out.shape == (2, 1, 5, 6)
    np.testing.assert_allclose(out, expect, rtol=1e-9)
    out = layers.compute_reprojection_loss(t(p), t(q), no_ssim=True).numpy()
    np.testing.assert_allclose(out, np.abs(p - q).mean(1, keepdims=True), atol=1e-6)
    # reused target statistics: same value, and the same gradient as the plain call
    stats = layers.reprojection_target_stats(t(q, "float64"))
    out = layers.compute_reprojection_loss(t(p, "float64"), t(q, "float64"), target_stats=stats).numpy()
    np.testing.assert_allclose(out, expect, rtol=1e-9)
    grads = []
    for st in (None, layers.reprojection_target_stats(t(q, "float64"))):
        pt = t(p, "float64", grad=True)
        l = layers.compute_reprojection_loss(pt, t(q, "float64"), target_stats=st)
        (l * l).sum().backward()
        grads.append(pt.grad.numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-9, atol=1e-12)
    # ... and that gradient is the true one (central differences, border and inner pixels)
    for idx in [(0, 0, 0, 0), (1, 2, 4, 5), (0, 1, 2, 3), (1, 0, 0, 3)]:
        d = np.zeros_like(p)
        d[idx] = 1e-6
        lp = layers.compute_reprojection_loss(t(p + d, "float64"), t(q, "float64")).numpy()
        lm = layers.compute_reprojection_loss(t(p - d, "float64"), t(q, "float64")).numpy()
        np.testing.assert_allclose(grads[0][idx], ((lp * lp).sum() - (lm * lm).sum()) / 2e-6, rtol=1e-5)


def test_smooth_loss_matches_numpy():
    rng = np.random.RandomState(0)
    d, im = rng.rand(2, 1, 5, 7), rng.rand(2, 3, 5, 7)
    gx = np.abs(d[..., :-1] - d[..., 1:]) * np.exp(-np.abs(im[..., :-1] - im[..., 1:]).mean(1, keepdims=True))
    gy = np.abs(d[:, :, :-1] - d[:, :, 1:]) * np.exp(-np.abs(im[:, :, :-1] - im[:, :, 1:]).mean(1, keepdims=True))
    out = layers.get_smooth_loss(t(d), t(im))
    assert out.size == 1
    assert float(out) == pytest.approx(gx.mean() + gy.mean(), rel=1e-5)
    # gradient w.r.t. disp: sign(d_i - d_j) * w / N summed over both neighbour pairs
    dt = t(d, "float64", grad=True)
    layers.get_smooth_loss(dt, t(im, "float64")).backward()
    wx = np.exp(-np.abs(im[..., :-1] - im[..., 1:]).mean(1, keepdims=True)) / gx.size
    wy = np.exp(-np.abs(im[:, :, :-1] - im[:, :, 1:]).mean(1, keepdims=True)) / gy.size
    sx = np.sign(d[..., :-1] - d[..., 1:]) * wx
    sy = np.sign(d[:, :, :-1] - d[:, :, 1:]) * wy
    expect = np.zeros_like(d)
    expect[..., :-1] += sx
    expect[..., 1:] -= sx
    expect[:, :, :-1] += sy
    expect[:, :, 1:] -= sy
    np.testing.assert_allclose(dt.grad.numpy(), expect, rtol=1e-9, atol=1e-15)


def _row(*v):
    return t(np.array(v, "float32").reshape(1, 1, 1, -1))


def test_loss_masks_with_automask_and_hints_including_ties():
    # columns: reproj wins | identity wins | hint wins | r==i tie | i==h tie | r==h tie | all tie
    r = _row(1, 5, 5, 2, 5, 2, 3)
    i = _row(5, 1, 5, 2, 1, 5, 3)
    h = _row(5, 5, 1, 5, 1, 2, 3)
    rm, hm = layers.compute_loss_masks(r, i, h)
    assert rm.shape == [1, 1, 1, 7] and hm.shape == [1, 1, 1, 7]
    # argmin takes the first index on ties: 0 1 2 0 1 0 0
    np.testing.assert_array_equal(rm.numpy().ravel(), [1, 0, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(hm.numpy().ravel(), [0, 0, 1, 0, 0, 0, 0])
    rm, hm = layers.compute_loss_masks(r, i, None)
    assert hm is None
    np.testing.assert_array_equal(rm.numpy().ravel(), [1, 0, 1, 1, 0, 1, 1])


def test_loss_masks_without_automask():
    r = _row(1, 5, 2, 3)
    h = _row(5, 1, 2, 4)
    rm, hm = layers.compute_loss_masks(r, None, h)  # multi-element tensor: no truthiness error
    np.testing.assert_array_equal(rm.numpy().ravel(), [1, 1, 1, 1])
    np.testing.assert_array_equal(hm.numpy().ravel(), [0, 1, 0, 0])  # tie -> reprojection
    rm, hm = layers.compute_loss_masks(r, None, None)
    assert hm is None
    np.testing.assert_array_equal(rm.numpy().ravel(), [1, 1, 1, 1])


def test_loss_masks_carry_no_gradient_from_losses_that_do():
    r, i, h = _row(1, 5, 2), _row(5, 1, 2), _row(5, 5, 1)
    for x in (r, i, h):
        x.stop_gradient = False
    for args in ((r, i, h), (r, None, h), (r, i, None), (r, None, None)):
        rm, hm = layers.compute_loss_masks(*args)
        assert rm.stop_gradient and (hm is None or hm.stop_gradient)


def test_proxy_supervised_loss_hand_computed():
    pred = _row(1, 2, 3, 4)
    target = _row(2, 2, 1, 4.5)
    valid = _row(1, 1, 1, 0)
    mask = _row(1, 0, 1, 1)
    # log(2) + log(3) over 3 masked pixels (the last one is invalid)
    out = layers.compute_proxy_supervised_loss(pred, target, valid, mask)
    assert float(out) == pytest.approx(math.log(6.0) / 3.0, rel=1e-6)
    zero = layers.compute_proxy_supervised_loss(pred, target, valid, _row(0, 0, 0, 0))
    assert float(zero) == 0.0


# ----------------------------------------------------------------------------- metrics


def test_compute_depth_errors_hand_computed():
    gt = np.array([1.0, 2.0, 4.0, 10.0])
    pred = np.array([1.0, 2.4, 2.8, 20.0])
    e = layers.compute_depth_errors(gt, pred)
    assert len(e) == 7
    abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3 = e
    assert abs_rel == pytest.approx((0 + 0.2 + 0.3 + 1.0) / 4)
    assert sq_rel == pytest.approx((0 + 0.08 + 0.36 + 10.0) / 4)
    assert rmse == pytest.approx(math.sqrt((0 + 0.16 + 1.44 + 100) / 4))
    logs = [0, math.log(2 / 2.4), math.log(4 / 2.8), math.log(0.5)]
    assert rmse_log == pytest.approx(math.sqrt(sum(v * v for v in logs) / 4))
    # ratios 1, 1.2, 1.43, 2 vs 1.25, 1.5625, 1.953
    assert (a1, a2, a3) == (0.5, 0.75, 0.75)
    assert e["abs_rel"] == abs_rel and e.a3 == a3
    assert e.as_dict()["rmse"] == rmse
