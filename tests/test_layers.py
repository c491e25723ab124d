"""Known-answer tests for layers.py: geometry, warping and the convolution blocks
(docs/METHOD.md, sections 2 and 3); the loss functions are in test_layers_losses.py."""
import math

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import layers


def t(a, dtype="float32", grad=False):
    x = paddle.to_tensor(np.asarray(a, dtype=dtype))
    x.stop_gradient = not grad
    return x


def kitti_K(h, w, b=1):
    K = np.array([[0.58, 0, 0.5, 0], [0, 1.92, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "float64")
    K[0] *= w
    K[1] *= h
    return np.repeat(K[None], b, 0), np.repeat(np.linalg.pinv(K)[None], b, 0)


def pixel_grid(h, w):
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    return np.stack([(xs / (w - 1) - 0.5) * 2, (ys / (h - 1) - 0.5) * 2], -1)


# ----------------------------------------------------------------------------- depth / poses


def test_disp_to_depth_endpoints():
    scaled, depth = layers.disp_to_depth(t([0.0, 1.0, 0.5]), 0.1, 100)
    np.testing.assert_allclose(depth.numpy()[:2], [100.0, 0.1], rtol=1e-6)
    np.testing.assert_allclose(scaled.numpy(), [0.01, 10.0, 0.01 + 9.99 * 0.5], rtol=1e-6)
    # numpy input works too
    s, d = layers.disp_to_depth(np.array([1.0]), 0.1, 100)
    assert d[0] == pytest.approx(0.1)


def test_rotation_hand_computed_90_degrees():
    R = layers.rot_from_axisangle(t([[[0, 0, math.pi / 2]], [[math.pi / 2, 0, 0]]])).numpy()
    assert R.shape == (2, 4, 4)
    rz = np.array([[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    rx = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(R[0], rz, atol=1e-6)
    np.testing.assert_allclose(R[1], rx, atol=1e-6)


def test_rotations_orthonormal():
    rng = np.random.RandomState(0)
    R = layers.rot_from_axisangle(t(rng.randn(5, 1, 3))).numpy()[:, :3, :3].astype("float64")
    for r in R:
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
        assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-5)
    # zero rotation is the identity
    np.testing.assert_allclose(layers.rot_from_axisangle(t(np.zeros((1, 1, 3)))).numpy()[0],
                               np.eye(4), atol=1e-7)


def test_rotation_gradient_finite_at_zero():
    v = t(np.zeros((2, 1, 3)), grad=True)
    layers.rot_from_axisangle(v).sum().backward()
    assert np.isfinite(v.grad.numpy()).all()


def test_translation_and_transformation():
    rng = np.random.RandomState(1)
    aa, tr = rng.randn(3, 1, 3) * 0.3, rng.randn(3, 1, 3)
    T = layers.get_translation_matrix(t(tr)).numpy()
    expect = np.repeat(np.eye(4)[None], 3, 0)
    expect[:, :3, 3] = tr[:, 0]
    np.testing.assert_allclose(T, expect, atol=1e-7)
    M = layers.transformation_from_parameters(t(aa), t(tr)).numpy().astype("float64")
    R = layers.rot_from_axisangle(t(aa)).numpy()
    np.testing.assert_allclose(M[:, :3, :3], R[:, :3, :3], atol=1e-6)  # M = T @ R
    np.testing.assert_allclose(M[:, :3, 3], tr[:, 0], atol=1e-6)
    Minv = layers.transformation_from_parameters(t(aa), t(tr), invert=True).numpy()
    np.testing.assert_allclose(Minv, np.linalg.inv(M), atol=1e-5)
    assert M.shape == (3, 4, 4)


# ----------------------------------------------------------------------------- geometry


def test_backproject_project_identity_returns_pixel_grid():
    h, w = 6, 10
    bp = layers.BackprojectDepth(4, h, w)  # constructed for 4, used with 2
    pj = layers.Project3D(4, h, w)
    K, invK = kitti_K(h, w, 2)
    depth = np.random.RandomState(0).uniform(1, 50, (2, 1, h, w))
    pts = bp(t(depth), t(invK))
    assert pts.shape == [2, 4, h * w]
    np.testing.assert_allclose(pts.numpy()[:, 2], depth.reshape(2, -1), rtol=1e-5)
    np.testing.assert_allclose(pts.numpy()[:, 3], 1.0)
    grid = pj(pts, t(K), t(np.repeat(np.eye(4)[None], 2, 0)))
    assert grid.shape == [2, h, w, 2]
    np.testing.assert_allclose(grid.numpy()[0], pixel_grid(h, w), atol=1e-5)
    np.testing.assert_allclose(grid.numpy()[1], pixel_grid(h, w), atol=1e-5)
    # the pixel grid is a buffer, not a parameter, and is not saved
    assert len(bp.parameters()) == 0 and len(bp.state_dict()) == 0
    assert len(pj.parameters()) == 0


def test_project3d_matches_numpy_formula():
    h, w = 4, 5
    rng = np.random.RandomState(3)
    K, _ = kitti_K(h, w, 1)
    T = np.eye(4)[None].copy()
    T[0, :3, 3] = [0.1, -0.05, 0.2]
    pts = np.concatenate([rng.uniform(-1, 1, (1, 2, h * w)), rng.uniform(2, 5, (1, 1, h * w)),
                          np.ones((1, 1, h * w))], 1)
    grid = layers.Project3D(1, h, w)(t(pts), t(K), t(T)).numpy()[0]
    cam = (K[0] @ T[0])[:3] @ pts[0]
    pix = cam[:2] / (cam[2:] + 1e-7)
    gx = (pix[0] / (w - 1) - 0.5) * 2
    gy = (pix[1] / (h - 1) - 0.5) * 2
    np.testing.assert_allclose(grid[..., 0].reshape(-1), gx, atol=1e-5)
    np.testing.assert_allclose(grid[..., 1].reshape(-1), gy, atol=1e-5)


def test_warp_identity_and_one_pixel_shift_with_border():
    h, w = 5, 7
    img = np.random.RandomState(0).rand(2, 3, h, w)
    g = np.repeat(pixel_grid(h, w)[None], 2, 0)
    np.testing.assert_allclose(layers.warp(t(img), t(g)).numpy(), img, atol=1e-6)
    # sampling at x + 1 pixel: image shifted left, last column repeated (border padding)
    g1 = g.copy()
    g1[..., 0] += 2.0 / (w - 1)
    out = layers.warp(t(img), t(g1)).numpy()
    np.testing.assert_allclose(out[..., :-1], img[..., 1:], atol=1e-6)
    np.testing.assert_allclose(out[..., -1], img[..., -1], atol=1e-6)
    # half a pixel: bilinear average of neighbours
    g2 = g.copy()
    g2[..., 0] += 1.0 / (w - 1)
    out = layers.warp(t(img), t(g2)).numpy()
    np.testing.assert_allclose(out[..., :-1], 0.5 * (img[..., :-1] + img[..., 1:]), atol=1e-6)


def _warp_with_depth(depth, img, K, invK, T, h, w):
    pts = layers.BackprojectDepth(1, h, w)(depth, invK)
    grid = layers.Project3D(1, h, w)(pts, K, T)
    return layers.warp(img, grid)


def test_finite_difference_gradient_through_warp_into_depth():
    h, w = 6, 8
    rng = np.random.RandomState(0)
    K, invK = kitti_K(h, w)
    T = np.eye(4)[None].copy()
    T[0, 0, 3] = 0.1
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    img = np.stack([np.sin(0.9 * xs + 0.3 * ys), np.cos(0.7 * xs - 0.2 * ys),
                    np.sin(0.5 * xs * ys / 7.0)])[None]
    # shift = 0.58 * w * 0.1 / depth px, kept well inside (0, 1) px (away from kinks)
    depth = rng.uniform(0.8, 1.4, (1, 1, h, w))
    weights = rng.randn(1, 3, h, w)
    args = [t(img, "float64"), t(K, "float64"), t(invK, "float64"), t(T, "float64"), h, w]
    d = t(depth, "float64", grad=True)
    loss = (_warp_with_depth(d, *args) * t(weights, "float64")).sum()
    loss.backward()
    grad = d.grad.numpy()
    eps = 1e-6

    def f(dep):
        return float((_warp_with_depth(t(dep, "float64"), *args).numpy() * weights).sum())

    num = np.zeros_like(depth)
    for i in range(h):
        for j in range(w):
            dp, dm = depth.copy(), depth.copy()
            dp[0, 0, i, j] += eps
            dm[0, 0, i, j] -= eps
            num[0, 0, i, j] = (f(dp) - f(dm)) / (2 * eps)
    assert np.abs(num).max() > 1e-2  # the check is not vacuous
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


def test_backward_with_image_as_data_does_not_crash():
    h, w = 6, 8
    K, invK = kitti_K(h, w)
    T = np.eye(4)[None].copy()
    T[0, 0, 3] = -0.1
    img = t(np.random.RandomState(1).rand(1, 3, h, w))  # data: stop_gradient=True
    assert img.stop_gradient
    d = t(np.full((1, 1, h, w), 1.0), grad=True)
    out = _warp_with_depth(d, img, t(K), t(invK), t(T), h, w)
    out.mean().backward()
    g = d.grad.numpy()
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
    assert img.grad is None and img.stop_gradient


# ----------------------------------------------------------------------------- conv blocks


def test_reflection_pad1_equals_numpy_reflect_and_gradient():
    x0 = np.random.RandomState(0).rand(2, 3, 4, 5).astype("float32")
    x = t(x0, grad=True)
    y = layers.reflection_pad1(x)
    np.testing.assert_array_equal(y.numpy(), np.pad(x0, ((0, 0), (0, 0), (1, 1), (1, 1)), "reflect"))
    y.sum().backward()
    # each input pixel's gradient = how many times it appears in the padded output
    expect = np.ones((4, 5))
    expect[1, :] += 1
    expect[-2, :] += 1
    expect[:, 1] *= 2
    expect[:, -2] *= 2
    np.testing.assert_allclose(x.grad.numpy()[0, 0], expect)


def test_conv3x3_and_convblock_names_and_values():
    paddle.seed(0)
    blk = layers.ConvBlock(3, 4)
    names = {k: tuple(v.shape) for k, v in blk.state_dict().items()}
    assert names == {"conv.conv.weight": (4, 3, 3, 3), "conv.conv.bias": (4,)}
    assert isinstance(blk.conv, layers.Conv3x3) and isinstance(blk.nonlin, paddle.nn.ELU)
    x = t(np.random.RandomState(0).rand(2, 3, 6, 7))
    ref = F.elu(F.conv2d(F.pad(x, [1, 1, 1, 1], mode="reflect"), blk.conv.conv.weight,
                         blk.conv.conv.bias))
    np.testing.assert_allclose(blk(x).numpy(), ref.numpy(), atol=1e-5)
    cz = layers.Conv3x3(3, 2, use_refl=False)
    ref = F.conv2d(F.pad(x, [1, 1, 1, 1]), cz.conv.weight, cz.conv.bias)
    np.testing.assert_allclose(cz(x).numpy(), ref.numpy(), atol=1e-5)



def test_conv3x3_one_output_channel_values_and_gradients():
    """The 1-output (disparity head) path: 1x1 conv to 9 taps + shifted sum."""
    paddle.seed(1)
    paddle.set_default_dtype("float64")
    try:
        conv = layers.Conv3x3(4, 1)
    finally:
        paddle.set_default_dtype("float32")
    x0 = np.random.RandomState(2).rand(2, 4, 5, 7)
    g0 = np.random.RandomState(3).rand(2, 1, 5, 7)
    grads = []
    for mode in ("fast", "ref"):
        x = t(x0, "float64", grad=True)
        if mode == "fast":
            y = conv(x)
        else:
            y = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="reflect"), conv.conv.weight, conv.conv.bias)
        (y * t(g0, "float64")).sum().backward()
        assert conv.conv.weight.grad.is_contiguous()  # collective all_reduce needs it
        grads.append([y.numpy(), x.grad.numpy(), conv.conv.weight.grad.numpy(), conv.conv.bias.grad.numpy()])
        conv.clear_gradients()
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # the bias gradient is the sum of the output gradient
    np.testing.assert_allclose(grads[0][3], [g0.sum()], rtol=1e-12)


def test_upsample_nearest():
    x = t(np.arange(6).reshape(1, 1, 2, 3))
    out = layers.upsample(x).numpy()[0, 0]
    np.testing.assert_array_equal(out, np.kron(np.arange(6).reshape(2, 3), np.ones((2, 2))))
    x = t(np.random.rand(2, 3, 4, 5))
    np.testing.assert_array_equal(layers.upsample(x).numpy(),
                                  F.interpolate(x, scale_factor=2, mode="nearest").numpy())


def test_upsample_pad1_equals_pad_of_upsample_and_gradient():
    x0 = np.arange(6, dtype="float32").reshape(1, 1, 2, 3)
    x = t(x0, grad=True)
    y = layers.upsample_pad1(x)
    expect = np.pad(np.kron(x0[0, 0], np.ones((2, 2))), 1, "reflect")
    np.testing.assert_array_equal(y.numpy()[0, 0], expect)
    (y * t(np.arange(y.size).reshape(y.shape))).sum().backward()
    # gradient of pixel (r, c) = sum of the output positions it was copied to
    w = np.arange(y.size).reshape(6, 8)
    src = (np.array([0, 0, 0, 1, 1, 1])[:, None] * 3 + np.array([0, 0, 0, 1, 1, 2, 2, 2])[None, :])
    expect_g = np.bincount(src.reshape(-1), weights=w.reshape(-1), minlength=6).reshape(2, 3)
    np.testing.assert_allclose(x.grad.numpy()[0, 0], expect_g)
    # padded ConvBlock input = the ordinary path
    paddle.seed(0)
    blk = layers.ConvBlock(3, 2)
    z = t(np.random.RandomState(1).rand(2, 3, 3, 4))
    np.testing.assert_allclose(blk(layers.upsample_pad1(z), padded=True).numpy(),
                               blk(layers.upsample(z)).numpy(), atol=1e-6)


@pytest.mark.slow
def test_static_graph_export_matches_eager(tmp_path):
    """reflection_pad1 / upsample / SSIM trace with paddle.jit (fixed and dynamic shapes),
    save, load, and leave eager calls working (no cached eager tensor is captured)."""

    class Net(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.block = layers.ConvBlock(3, 4)
            self.ssim = layers.SSIM()

        def forward(self, x):
            return layers.upsample(self.block(x)), self.ssim(x, x * 0.5)

    paddle.seed(0)
    net = Net()
    net.eval()
    x = t(np.random.RandomState(0).rand(2, 3, 8, 10))
    import cpu_kernels
    with cpu_kernels.disabled():  # a static graph runs the plain ops
        ref = [o.numpy() for o in net(x)]
    for shape in ([2, 3, 8, 10], [None, 3, None, None]):
        spec = [paddle.static.InputSpec(shape, "float32")]
        prefix = str(tmp_path / "m{}".format(len([d for d in shape if d is None])))
        paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), prefix,
                        input_spec=spec)
        loaded = paddle.jit.load(prefix)
        for o, r in zip(loaded(x), ref):
            np.testing.assert_allclose(o.numpy(), r, atol=1e-6)
    # eager calls still fine afterwards
    # (the CPU kernels agree with the plain ops to float rounding, amplified by SSIM's
    # E[x^2] - mu^2 cancellation)
    np.testing.assert_allclose(layers.SSIM()(x, x * 0.5).numpy(), ref[1], atol=5e-6)
    np.testing.assert_allclose(net(x)[0].numpy(), ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layers.reflection_pad1(x).numpy(),
                                  np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), "reflect"))
