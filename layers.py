"""Geometry and loss math of Monodepth2 / Depth Hints (SPEC sections 2-4).

All tensors are NCHW ``paddle.Tensor``s unless stated otherwise. Every formula follows
``../shared/SPEC.md``; where the SPEC is silent the Monodepth2 reference semantics apply.

Speed notes (Paddle 3.x on CPU): ``pad3d`` in reflect mode, ``pow`` and many separate
avg-pool calls dominate a naive training step, so this module

* pads by one pixel with a single gather of cached indices (:func:`reflection_pad1`),
* upsamples with expand + reshape (:func:`upsample`),
* squares with ``x * x`` (never ``**2`` / ``pow``),
* mean-filters the SSIM statistics with one depthwise 3x3 convolution over one
  concatenated tensor.

:func:`warp` is the single image-sampling helper of the project; it works around Paddle's
CPU ``grid_sample`` backward crash that happens when the grid needs a gradient but the
sampled image does not.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer

__all__ = [
    "disp_to_depth", "rot_from_axisangle", "get_translation_matrix",
    "transformation_from_parameters", "BackprojectDepth", "Project3D", "warp",
    "reflection_pad1", "upsample_pad1", "SSIM", "Conv3x3", "ConvBlock", "upsample",
    "add_channel_bias", "get_smooth_loss", "compute_reprojection_loss", "reprojection_target_stats", "compute_loss_masks",
    "compute_proxy_supervised_loss", "compute_depth_errors", "DepthErrors",
]


# ----------------------------------------------------------------------------- depth


def disp_to_depth(disp, min_depth, max_depth):
    """Convert the network's sigmoid output to (scaled_disp, depth) (SPEC 3).

    scaled = 1/max_depth + (1/min_depth - 1/max_depth) * disp; depth = 1 / scaled.
    Works on paddle tensors and on numpy arrays.
    """
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    depth = 1.0 / scaled_disp
    return scaled_disp, depth


# ----------------------------------------------------------------------------- poses


def rot_from_axisangle(vec):
    """Axis-angle (B, 1, 3) -> homogeneous rotation (B, 4, 4) by Rodrigues' formula.

    angle = |v|, axis = v / (angle + 1e-7) (SPEC 3).
    """
    # + 1e-20 keeps the gradient finite (0, like torch.norm's) at a zero vector; the value
    # changes by less than float32 resolution for |v| > 1e-6 (pose outputs are ~1e-3)
    angle = paddle.sqrt(paddle.sum(vec * vec, axis=2, keepdim=True) + 1e-20)  # (B,1,1)
    axis = vec / (angle + 1e-7)
    ca = paddle.cos(angle)[:, 0, 0]
    sa = paddle.sin(angle)[:, 0, 0]
    C = 1.0 - ca
    x = axis[:, 0, 0]
    y = axis[:, 0, 1]
    z = axis[:, 0, 2]
    xs, ys, zs = x * sa, y * sa, z * sa
    xC, yC, zC = x * C, y * C, z * C
    xyC, yzC, zxC = x * yC, y * zC, z * xC
    zero = paddle.zeros_like(x)
    one = paddle.ones_like(x)
    rows = [
        x * xC + ca, xyC - zs, zxC + ys, zero,
        xyC + zs, y * yC + ca, yzC - xs, zero,
        zxC - ys, yzC + xs, z * zC + ca, zero,
        zero, zero, zero, one,
    ]
    return paddle.stack(rows, axis=1).reshape([-1, 4, 4])


def get_translation_matrix(translation_vector):
    """Translation (B, 1, 3) -> homogeneous 4x4 translation matrices (B, 4, 4)."""
    t = translation_vector.reshape([-1, 3, 1])
    b = t.shape[0]
    eye3 = paddle.eye(3, dtype=t.dtype).unsqueeze(0).expand([b, 3, 3])
    top = paddle.concat([eye3, t], axis=2)  # (B,3,4)
    bottom = paddle.concat([paddle.zeros([b, 1, 3], dtype=t.dtype),
                            paddle.ones([b, 1, 1], dtype=t.dtype)], axis=2)
    return paddle.concat([top, bottom], axis=1)


def transformation_from_parameters(axisangle, translation, invert=False):
    """Pose-network output (B,1,3), (B,1,3) -> 4x4 transform (B,4,4).

    M = T(t) @ R, or with ``invert`` M = R^T @ T(-t), i.e. the inverse of the former.
    """
    R = rot_from_axisangle(axisangle)
    t = translation
    if invert:
        R = R.transpose([0, 2, 1])
        t = -t
    T = get_translation_matrix(t)
    if invert:
        return paddle.matmul(R, T)
    return paddle.matmul(T, R)


# ----------------------------------------------------------------------------- geometry


class BackprojectDepth(nn.Layer):
    """Depth (B,1,H,W) + inv_K (B,4,4) -> homogeneous camera points (B,4,H*W) (SPEC 3).

    ``batch_size`` is kept for Monodepth2 API compatibility only: ``forward`` uses the
    batch size of its input, so a last, smaller batch works. The pixel grid
    (x, y, 1) is a non-trainable, non-persistable buffer.
    """

    def __init__(self, batch_size, height, width):
        super().__init__()
        self.batch_size = batch_size
        self.height = height
        self.width = width
        xs, ys = np.meshgrid(np.arange(width), np.arange(height), indexing="xy")
        pix = np.stack([xs.reshape(-1), ys.reshape(-1), np.ones(height * width)], 0)
        self.register_buffer("pix_coords",
                             paddle.to_tensor(pix[None].astype("float32")),
                             persistable=False)  # (1,3,HW)

    def forward(self, depth, inv_K):
        b = depth.shape[0]
        pix = self.pix_coords
        if pix.dtype != inv_K.dtype:
            pix = pix.astype(inv_K.dtype)
        cam = paddle.matmul(inv_K[:, :3, :3], pix)  # (B,3,HW) by broadcasting
        cam = depth.reshape([b, 1, -1]) * cam
        ones = paddle.ones([b, 1, self.height * self.width], dtype=cam.dtype)
        return paddle.concat([cam, ones], axis=1)


class Project3D(nn.Layer):
    """Points (B,4,HW), K (B,4,4), T (B,4,4) -> sampling grid (B,H,W,2) in [-1, 1] (SPEC 3).

    P = (K @ T)[:3]; pix = (P @ points)[:2] / (z + eps); x /= W-1, y /= H-1;
    grid = (pix - 0.5) * 2 (align_corners=True convention).
    """

    def __init__(self, batch_size, height, width, eps=1e-7):
        super().__init__()
        self.batch_size = batch_size
        self.height = height
        self.width = width
        self.eps = eps
        self.register_buffer("norm_div",
                             paddle.to_tensor(np.array([width - 1, height - 1], "float32")),
                             persistable=False)

    def forward(self, points, K, T):
        b = points.shape[0]
        P = paddle.matmul(K, T)[:, :3, :]
        cam = paddle.matmul(P, points)  # (B,3,HW)
        xy, z = paddle.split(cam, [2, 1], axis=1)  # split's backward is cheaper than slices'
        pix = xy / (z + self.eps)
        pix = pix.reshape([b, 2, self.height, self.width]).transpose([0, 2, 3, 1])
        div = self.norm_div if self.norm_div.dtype == pix.dtype else self.norm_div.astype(pix.dtype)
        return (pix / div - 0.5) * 2


def warp(image, grid):
    """Sample ``image`` (B,C,H,W) at ``grid`` (B,Ho,Wo,2): bilinear, border, align_corners.

    THE one warping helper of the project. Paddle's CPU grid_sample backward crashes when
    the grid needs a gradient but the image does not; in that case the image is sampled
    through a detached alias with ``stop_gradient=False`` (no data copy). The alias is a
    throw-away leaf, so no gradient reaches the caller's image.
    """
    if image.stop_gradient and not grid.stop_gradient:
        image = image.detach()
        image.stop_gradient = False
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)


# ----------------------------------------------------------------------------- conv blocks


_PAD_INDEX = {}


def _reflect_index(height, width, place):
    """Flat indices into an (H*W) plane that produce its (H+2)*(W+2) reflection padding
    (cached per size and device)."""
    key = (height, width, str(place))
    idx = _PAD_INDEX.get(key)
    if idx is None:
        rows = np.concatenate([[1], np.arange(height), [height - 2]])
        cols = np.concatenate([[1], np.arange(width), [width - 2]])
        flat = (rows[:, None] * width + cols[None, :]).reshape(-1).astype("int64")
        idx = paddle.to_tensor(flat, place=place)
        _PAD_INDEX[key] = idx
    return idx


def _upsample_pad_index(height, width, place):
    """Flat indices into an (H*W) plane that produce the 1-pixel reflection padding of its
    2x nearest-neighbour upsampling, (2H+2)*(2W+2) (cached per size and device)."""
    key = ("up", height, width, str(place))
    idx = _PAD_INDEX.get(key)
    if idx is None:
        rows = np.arange(2 * height) // 2
        cols = np.arange(2 * width) // 2
        rows = np.concatenate([[rows[1]], rows, [rows[-2]]])
        cols = np.concatenate([[cols[1]], cols, [cols[-2]]])
        flat = (rows[:, None] * width + cols[None, :]).reshape(-1).astype("int64")
        idx = paddle.to_tensor(flat, place=place)
        _PAD_INDEX[key] = idx
    return idx


def upsample_pad1(x):
    """``reflection_pad1(upsample(x))`` in one gather (about 2x faster forward+backward on
    CPU than expand + gather at decoder sizes). Static graphs use the two-step form."""
    if paddle.in_dynamic_mode():
        b, c, h, w = x.shape
        out = paddle.gather(x.reshape([b * c, h * w]), _upsample_pad_index(h, w, x.place), axis=1)
        return out.reshape([b, c, 2 * h + 2, 2 * w + 2])
    return reflection_pad1(upsample(x))


def reflection_pad1(x):
    """Reflection padding by one pixel on H and W of an NCHW tensor.

    Equal to ``numpy.pad(x, ((0,0),(0,0),(1,1),(1,1)), mode='reflect')``. Implemented as
    one ``gather`` of precomputed flat indices (forward+backward about 2x faster on CPU
    than Paddle's pad3d and than slice+concat at decoder sizes); falls back to
    slice+concat in static graphs (``paddle.jit.to_static``/export), so no cached eager
    tensor is ever captured by a traced program. Needs H, W >= 2.
    """
    if paddle.in_dynamic_mode():
        b, c, h, w = x.shape
        out = paddle.gather(x.reshape([b * c, h * w]), _reflect_index(h, w, x.place), axis=1)
        return out.reshape([b, c, h + 2, w + 2])
    x = paddle.concat([x[:, :, 1:2], x, x[:, :, -2:-1]], axis=2)
    return paddle.concat([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], axis=3)


def add_channel_bias(y, bias):
    """``y + bias.reshape([1, C, 1, 1])`` for an NCHW tensor, computed as a (B*C, H*W) +
    (B*C, 1) add: Paddle's CPU add broadcasts a [1, C, 1, 1] operand through a slow generic
    path (forward ~15x, backward ~7x slower at 4x16x192x640), a trailing size-1 axis is
    fast. Same values; the bias gradient differs only by summation order."""
    b, c, h, w = y.shape
    bias = bias.reshape([1, c]).expand([b, c]).reshape([b * c, 1])
    return (y.reshape([b * c, h * w]) + bias).reshape([b, c, h, w])


class _ShiftSum3x3(PyLayer):
    """(B,9,H+2,W+2) -> (B,1,H,W): sum over taps t = 3*kh + kw of y[:, t, kh:kh+H, kw:kw+W].

    With y = the 1x1 convolution of a padded input by the 9 taps of a 3x3 kernel, this is
    the 3x3 'valid' convolution with ONE output channel (see :class:`Conv3x3`)."""

    @staticmethod
    def forward(ctx, y):
        h, w = y.shape[2] - 2, y.shape[3] - 2
        out = None
        for t in range(9):
            kh, kw = divmod(t, 3)
            s = y[:, t:t + 1, kh:kh + h, kw:kw + w]
            out = s if out is None else out + s
        return out

    @staticmethod
    def backward(ctx, grad):
        h, w = grad.shape[2], grad.shape[3]
        gp = F.pad(grad, [2, 2, 2, 2])
        return paddle.concat([gp[:, :, 2 - kh:4 - kh + h, 2 - kw:4 - kw + w]
                              for kh, kw in (divmod(t, 3) for t in range(9))], axis=1)


class _TapsAs1x1(PyLayer):
    """3x3 kernel (1, C, 3, 3) -> the (9, C, 1, 1) kernel of its taps, t = 3*kh + kw. A
    PyLayer so that the weight gradient is a contiguous tensor (Paddle's transpose
    backward returns a strided view, which collective all_reduce rejects)."""

    @staticmethod
    def forward(ctx, w):
        c = w.shape[1]
        return w.reshape([c, 9]).transpose([1, 0]).contiguous().reshape([9, c, 1, 1])

    @staticmethod
    def backward(ctx, grad):
        c = grad.shape[1]
        return grad.reshape([9, c]).transpose([1, 0]).contiguous().reshape([1, c, 3, 3])


class Conv3x3(nn.Layer):
    """Reflection- (default) or zero-padded 3x3 convolution; sub-layer ``conv``.

    With ``use_refl=False`` the zero padding is done by the convolution itself
    (``padding=1``), which is numerically the same as ZeroPad2d(1) + conv.
    """

    def __init__(self, in_channels, out_channels, use_refl=True):
        super().__init__()
        self.use_refl = use_refl
        self.conv = nn.Conv2D(int(in_channels), int(out_channels), 3,
                              padding=0 if use_refl else 1)

    def forward(self, x, padded=False):
        """``padded=True``: ``x`` already carries the 1-pixel reflection padding (the
        decoder pads while upsampling), so only the convolution runs."""
        if self.use_refl and not padded:
            x = reflection_pad1(x)
        if not paddle.in_dynamic_mode() or self.conv.bias is None:
            return self.conv(x)
        wt = self.conv.weight
        if self.use_refl and wt.shape[0] == 1 and x.place.is_cpu_place():
            # one output channel (the disparity heads): Paddle's im2col/col2im convolution
            # costs nearly as much as for 16 outputs; a 1x1 convolution to the 9 taps plus
            # a shifted sum is ~2x faster forward+backward (same value to float rounding;
            # CPU only: GPUs keep their cuDNN convolution)
            y = _ShiftSum3x3.apply(F.conv2d(x, _TapsAs1x1.apply(wt)))
        else:
            y = F.conv2d(x, wt, None, padding=0 if self.use_refl else 1)
        return add_channel_bias(y, self.conv.bias)


class ConvBlock(nn.Layer):
    """Conv3x3 (reflection padded) followed by ELU; attributes ``conv`` and ``nonlin``."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU()

    def forward(self, x, padded=False):
        return self.nonlin(self.conv(x, padded))


def upsample(x):
    """Nearest-neighbour upsampling by 2 (NCHW), same values as
    ``F.interpolate(x, scale_factor=2, mode='nearest')`` but built from expand + reshape
    (about 2.5x faster forward+backward on CPU). Static graphs (``paddle.jit``) use
    interpolate."""
    if paddle.in_dynamic_mode():
        b, c, h, w = x.shape
        x = x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2])
        return x.reshape([b, c, 2 * h, 2 * w])
    return F.interpolate(x, scale_factor=2, mode="nearest")


# ----------------------------------------------------------------------------- losses


class _BoxFilter3(PyLayer):
    """Depthwise 3x3 'valid' correlation with a constant symmetric kernel whose backward is
    the same depthwise correlation of the gradient with zero padding 2 (the adjoint for a
    symmetric kernel). Paddle's own depthwise-conv backward is ~3x slower on CPU."""

    @staticmethod
    def forward(ctx, x, kernel):
        ctx.kernel = kernel
        return F.conv2d(x, kernel, groups=kernel.shape[0])

    @staticmethod
    def backward(ctx, grad):
        k = ctx.kernel
        return F.conv2d(grad, k, padding=2, groups=k.shape[0])


class SSIM(nn.Layer):
    """Per-pixel SSIM distance clamp((1 - SSIM(x, y)) / 2, 0, 1), shape (B,C,H,W) (SPEC 4).

    Reflection pad 1, 3x3 mean pooling (stride 1), C1 = 0.01^2, C2 = 0.03^2.
    Fast form: the statistics x, y, x^2 + y^2 and xy are concatenated along channels,
    padded once and mean-filtered by one depthwise 3x3 convolution (weights 1/9), which
    is about 3x faster forward+backward on CPU than pad3d + five avg-pools. Using
    pool(x^2 + y^2) = pool(x^2) + pool(y^2) (the only term where sigma_x, sigma_y occur)
    saves one pooled statistic; results agree with the textbook form to float rounding.

    ``forward(x, y, y_stats)`` with ``y_stats = ssim.target_stats(y)`` reuses the pooled
    statistics of a target shared by several calls (the trainer compares ~6 images with
    the same target per step): only x, x^2 and xy are then pooled.
    """

    C1 = 0.01 ** 2
    C2 = 0.03 ** 2

    def __init__(self):
        super().__init__()
        self._kernels = {}

    def _kernel(self, channels, dtype):
        if not paddle.in_dynamic_mode():  # static graph: a constant op, never a cached tensor
            return paddle.full([channels, 1, 3, 3], 1.0 / 9.0, dtype=dtype)
        key = (channels, str(dtype), paddle.get_device())
        k = self._kernels.get(key)
        if k is None:
            k = paddle.full([channels, 1, 3, 3], 1.0 / 9.0, dtype=dtype)
            self._kernels[key] = k
        return k

    def _pool(self, stats):
        """3x3 mean with reflection padding of every channel of ``stats``."""
        c = stats.shape[1]
        k = self._kernel(c, stats.dtype)
        padded = reflection_pad1(stats)
        if paddle.in_dynamic_mode() and not stats.stop_gradient:
            return _BoxFilter3.apply(padded, k)
        return F.conv2d(padded, k, groups=c)

    def target_stats(self, y):
        """Pooled (mu_y, E[y^2]) of a target image, for reuse across ``forward`` calls."""
        mu_y, e_yy = paddle.split(self._pool(paddle.concat([y, y * y], axis=1)), 2, axis=1)
        return mu_y, e_yy

    def forward(self, x, y, y_stats=None):
        if y_stats is None:
            stats = paddle.concat([x, y, x * x + y * y, x * y], axis=1)
            mu_x, mu_y, e_sq, e_xy = paddle.split(self._pool(stats), 4, axis=1)
        else:
            mu_y, e_yy = y_stats
            mu_x, e_xx, e_xy = paddle.split(self._pool(paddle.concat([x, x * x, x * y], axis=1)), 3, axis=1)
            e_sq = e_xx + e_yy
        mu_xy = mu_x * mu_y
        mu_sq = mu_x * mu_x + mu_y * mu_y
        n = (2 * mu_xy + self.C1) * (2 * (e_xy - mu_xy) + self.C2)
        d = (mu_sq + self.C1) * (e_sq - mu_sq + self.C2)
        return paddle.clip((1 - n / d) * 0.5, 0.0, 1.0)


_SSIM = SSIM()


def reprojection_target_stats(target):
    """Precomputed SSIM statistics of ``target`` for :func:`compute_reprojection_loss`
    (compute once, pass to every call with the same target; no gradient flows into them)."""
    return _SSIM.target_stats(target.detach() if not target.stop_gradient else target)


def compute_reprojection_loss(pred, target, no_ssim=False, target_stats=None):
    """Photometric error pe = 0.85 mean_c SSIM + 0.15 mean_c |pred - target|, (B,1,H,W).

    With ``no_ssim`` only mean_c |pred - target|. Both channel means are taken in one op.
    ``target_stats`` (optional, from :func:`reprojection_target_stats`) reuses the
    target's pooled SSIM statistics; the value is the same to float rounding. Only for
    targets that need no gradient.
    """
    abs_diff = paddle.abs(target - pred)
    if no_ssim:
        return paddle.mean(abs_diff, axis=1, keepdim=True)
    return paddle.mean(0.85 * _SSIM(pred, target, target_stats) + 0.15 * abs_diff, axis=1, keepdim=True)


class _NeighbourDiff(PyLayer):
    """x[..., :-1] - x[..., 1:] along ``axis`` (2 or 3) of an NCHW tensor. Paddle's CPU
    backward of a slice allocates and fills a full-size zero tensor per slice (two per
    difference, ~20 ms at 4x1x192x640); here the backward is two concats."""

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        n = x.shape[axis]
        return (paddle.slice(x, [axis], [0], [n - 1]) - paddle.slice(x, [axis], [1], [n]))

    @staticmethod
    def backward(ctx, grad):
        axis = ctx.axis
        zero = paddle.zeros_like(paddle.slice(grad, [axis], [0], [1]))
        return paddle.concat([grad, zero], axis) - paddle.concat([zero, grad], axis)


def _neighbour_diff(x, axis):
    if paddle.in_dynamic_mode() and not x.stop_gradient:
        return _NeighbourDiff.apply(x, axis)
    n = x.shape[axis]
    return paddle.slice(x, [axis], [0], [n - 1]) - paddle.slice(x, [axis], [1], [n])


def get_smooth_loss(disp, img):
    """Edge-aware smoothness (scalar) (SPEC 4, Monodepth2 semantics).

    mean(|dx disp| * exp(-mean_c |dx img|)) + mean(|dy disp| * exp(-mean_c |dy img|)).
    ``disp`` is used as given: the caller mean-normalises it first.
    """
    gdx = paddle.abs(_neighbour_diff(disp, 3))
    gdy = paddle.abs(_neighbour_diff(disp, 2))
    gix = paddle.mean(paddle.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), axis=1, keepdim=True)
    giy = paddle.mean(paddle.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), axis=1, keepdim=True)
    return paddle.mean(gdx * paddle.exp(-gix)) + paddle.mean(gdy * paddle.exp(-giy))


def compute_loss_masks(reprojection_loss, identity_reprojection_loss,
                       depth_hint_reprojection_loss):
    """Per-pixel argmin masks (SPEC 4, Depth Hints) -> (reprojection_mask, hint_mask or None).

    With an identity loss: argmin over [reprojection, identity(, hint)] along channels;
    reprojection mask = argmin != 1, hint mask = argmin == 2 (None without a hint loss).
    Without an identity loss (no auto-masking): reprojection mask = ones, hint mask =
    (argmin over [reprojection, hint]) == 1, or None without a hint loss.
    Ties go to the FIRST candidate (reprojection before identity before hint), like
    ``argmin``. Masks are float, (B,1,H,W), and carry no gradient.
    """
    hint = depth_hint_reprojection_loss
    if identity_reprojection_loss is None:
        reprojection_mask = paddle.ones_like(reprojection_loss)
        if hint is None:
            return reprojection_mask, None
        losses = paddle.concat([reprojection_loss, hint], axis=1)
        idxs = paddle.argmin(losses, axis=1, keepdim=True)
        return reprojection_mask, (idxs == 1).astype(reprojection_loss.dtype)
    parts = [reprojection_loss, identity_reprojection_loss]
    if hint is not None:
        parts.append(hint)
    idxs = paddle.argmin(paddle.concat(parts, axis=1), axis=1, keepdim=True)
    reprojection_mask = (idxs != 1).astype(reprojection_loss.dtype)
    hint_mask = None if hint is None else (idxs == 2).astype(reprojection_loss.dtype)
    return reprojection_mask, hint_mask


def compute_proxy_supervised_loss(pred, target, valid_pixels, loss_mask):
    """Depth-hint loss: sum(log(1 + |target - pred|) * valid * mask) / (sum(mask) + 1e-7)."""
    loss = paddle.log1p(paddle.abs(target - pred)) * valid_pixels * loss_mask
    return paddle.sum(loss) / (paddle.sum(loss_mask) + 1e-7)


# ----------------------------------------------------------------------------- metrics


class DepthErrors(tuple):
    """The seven depth metrics as a tuple (abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3).

    Also indexable by name (``errors["abs_rel"]``) and convertible with ``as_dict()``.
    """

    NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")

    def __new__(cls, values):
        return super().__new__(cls, values)

    def __getitem__(self, key):
        if isinstance(key, str):
            return tuple.__getitem__(self, self.NAMES.index(key))
        return tuple.__getitem__(self, key)

    def __getattr__(self, name):
        if name in DepthErrors.NAMES:
            return tuple.__getitem__(self, DepthErrors.NAMES.index(name))
        raise AttributeError(name)

    def keys(self):
        return list(self.NAMES)

    def as_dict(self):
        return dict(zip(self.NAMES, self))


def compute_depth_errors(gt, pred):
    """Depth metrics between numpy arrays of valid ground truth and prediction (SPEC 6).

    Returns :class:`DepthErrors` (abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3) of floats.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    thresh = np.maximum(gt / pred, pred / gt)
    a1 = np.mean(thresh < 1.25)
    a2 = np.mean(thresh < 1.25 ** 2)
    a3 = np.mean(thresh < 1.25 ** 3)
    diff = gt - pred
    rmse = np.sqrt(np.mean(diff * diff))
    log_diff = np.log(gt) - np.log(pred)
    rmse_log = np.sqrt(np.mean(log_diff * log_diff))
    abs_rel = np.mean(np.abs(diff) / gt)
    sq_rel = np.mean(diff * diff / gt)
    return DepthErrors(float(v) for v in (abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3))
