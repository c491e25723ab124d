"""The geometry, losses and metrics of Monodepth2 / Depth Hints (docs/METHOD.md, sections 3, 4, 6), on NCHW tensors.
Training (losses.py) and the hint precomputation both call these functions, so hints and training agree by
construction. A function naming a "CPU twin" runs the faster form in cpu_kernels.py when ``cpu_kernels.active(x)``.
"""
import collections

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

import cpu_kernels


# ----------------------------------------------------------------------------- depth
def disp_to_depth(disp, min_depth, max_depth):
    """The network's sigmoid output -> (scaled_disp, depth), scaled_disp in [1/max_depth, 1/min_depth]
    and depth = 1 / scaled_disp (docs/METHOD.md, section 3). Paddle tensors or numpy arrays."""
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1.0 / scaled_disp


# ----------------------------------------------------------------------------- poses
def rot_from_axisangle(vec):
    """Axis-angle (B, 1, 3) -> homogeneous rotation (B, 4, 4) by Rodrigues' formula;
    angle = |v|, axis = v / (angle + 1e-7) (docs/METHOD.md, section 3)."""
    # + 1e-20 keeps the gradient finite (0, like torch.norm's) at a zero vector; the value
    # changes by less than float32 resolution for |v| > 1e-6 (pose outputs are ~1e-3)
    angle = paddle.sqrt(paddle.sum(vec * vec, axis=2, keepdim=True) + 1e-20)  # (B,1,1)
    axis = vec / (angle + 1e-7)
    ca, sa = paddle.cos(angle)[:, 0, 0], paddle.sin(angle)[:, 0, 0]
    C = 1.0 - ca
    x, y, z = axis[:, 0, 0], axis[:, 0, 1], axis[:, 0, 2]
    xs, ys, zs = x * sa, y * sa, z * sa
    xC, yC, zC = x * C, y * C, z * C
    xyC, yzC, zxC = x * yC, y * zC, z * xC
    zero, one = paddle.zeros_like(x), paddle.ones_like(x)
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
    last_col = paddle.concat([t, paddle.ones([b, 1, 1], dtype=t.dtype)], axis=1)  # (B,4,1)
    return paddle.concat([paddle.eye(4, 3, dtype=t.dtype).unsqueeze(0).expand([b, 4, 3]), last_col], axis=2)


def transformation_from_parameters(axisangle, translation, invert=False):
    """Pose-network output (B,1,3) x 2 -> transform (B,4,4): M = T(t) @ R, or with ``invert`` R^T @ T(-t)."""
    R = rot_from_axisangle(axisangle)
    if invert:
        return paddle.matmul(R.transpose([0, 2, 1]), get_translation_matrix(-translation))
    return paddle.matmul(get_translation_matrix(translation), R)


# ----------------------------------------------------------------------------- geometry
class BackprojectDepth(nn.Layer):
    """Depth (B,1,H,W) + inv_K (B,4,4) -> homogeneous camera points (B,4,H*W) (docs/METHOD.md, section 3).
    ``batch_size`` (Monodepth2's argument) is unused: ``forward`` takes the input's batch size."""

    def __init__(self, batch_size, height, width):
        super().__init__()
        self.batch_size, self.height, self.width = batch_size, height, width
        xs, ys = np.meshgrid(np.arange(width), np.arange(height), indexing="xy")
        pix = np.stack([xs.reshape(-1), ys.reshape(-1), np.ones(height * width)], 0)
        self.register_buffer("pix_coords", paddle.to_tensor(pix[None].astype("float32")), persistable=False)

    def forward(self, depth, inv_K):
        b = depth.shape[0]
        pix = self.pix_coords if self.pix_coords.dtype == inv_K.dtype else self.pix_coords.astype(inv_K.dtype)
        cam = depth.reshape([b, 1, -1]) * paddle.matmul(inv_K[:, :3, :3], pix)  # (B,3,HW) by broadcasting
        return paddle.concat([cam, paddle.ones([b, 1, self.height * self.width], dtype=cam.dtype)], axis=1)


class Project3D(nn.Layer):
    """Points (B,4,HW), K (B,4,4), T (B,4,4) -> sampling grid (B,H,W,2) in [-1, 1] for
    ``align_corners=True`` (docs/METHOD.md, section 3); ``batch_size`` is unused."""

    def __init__(self, batch_size, height, width, eps=1e-7):
        super().__init__()
        self.batch_size, self.height, self.width, self.eps = batch_size, height, width, eps
        self.register_buffer("norm_div", paddle.to_tensor(np.array([width - 1, height - 1], "float32")),
                             persistable=False)

    def forward(self, points, K, T):
        b = points.shape[0]
        cam = paddle.matmul(paddle.matmul(K, T)[:, :3, :], points)  # (B,3,HW)
        xy, z = paddle.split(cam, [2, 1], axis=1)  # split's backward is cheaper than slices'
        pix = (xy / (z + self.eps)).reshape([b, 2, self.height, self.width]).transpose([0, 2, 3, 1])
        div = self.norm_div if self.norm_div.dtype == pix.dtype else self.norm_div.astype(pix.dtype)
        return (pix / div - 0.5) * 2


def warp(image, grid):
    """Sample ``image`` (B,C,H,W) at ``grid`` (B,Ho,Wo,2): bilinear, border, align_corners. Paddle's CPU grid_sample
    backward crashes (segfault) when the grid needs a gradient but the image does not: the image is then sampled
    through a detached alias with ``stop_gradient=False`` (no copy; no gradient reaches the caller's image)."""
    if image.stop_gradient and not grid.stop_gradient:
        image = image.detach()
        image.stop_gradient = False
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


# ----------------------------------------------------------------------------- conv blocks
def reflection_pad1(x):
    """Reflection padding by one pixel on H and W (numpy.pad's 'reflect'). CPU twin: ``cpu_kernels.reflection_pad1``."""
    if cpu_kernels.active(x):
        return cpu_kernels.reflection_pad1(x)
    return F.pad(x, [1, 1, 1, 1], mode="reflect")


def upsample(x):
    """Nearest-neighbour x2 (NCHW): out[..., 2i + a, 2j + b] = x[..., i, j]; the decoder uses upsample_pad1."""
    return F.interpolate(x, scale_factor=2, mode="nearest")


def upsample_pad1(x):
    """``reflection_pad1(upsample(x))``: the decoder's upsampling. CPU twin: ``cpu_kernels.upsample_pad1``."""
    if cpu_kernels.active(x):
        return cpu_kernels.upsample_pad1(x)
    return reflection_pad1(upsample(x))


class Conv3x3(nn.Layer):
    """Reflection- (default) or zero-padded 3x3 convolution, sub-layer ``conv`` (zero padding by the
    convolution's ``padding=1``). CPU twin of the reflection-padded one: ``cpu_kernels.conv3x3``."""

    def __init__(self, in_channels, out_channels, use_refl=True):
        super().__init__()
        self.use_refl = use_refl
        self.conv = nn.Conv2D(int(in_channels), int(out_channels), 3, padding=0 if use_refl else 1)

    def forward(self, x, padded=False):
        """``padded=True``: ``x`` already carries the 1-pixel reflection padding (the decoder pads while upsampling)."""
        if not self.use_refl:
            return self.conv(x)
        if not padded:
            x = reflection_pad1(x)
        if cpu_kernels.active(x):
            return cpu_kernels.conv3x3(x, self.conv.weight, self.conv.bias)
        return self.conv(x)


class ConvBlock(nn.Layer):
    """Conv3x3 (reflection padded) followed by ELU; attributes ``conv`` and ``nonlin``."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU()

    def forward(self, x, padded=False):
        return self.nonlin(self.conv(x, padded))


# ----------------------------------------------------------------------------- losses
def mean_filter3(padded):
    """3x3 mean (stride 1, no padding) of every channel of an NCHW tensor. CPU twin: ``cpu_kernels.mean_filter3``."""
    if cpu_kernels.active(padded):
        return cpu_kernels.mean_filter3(padded)
    return F.avg_pool2d(padded, kernel_size=3, stride=1)


class SSIM(nn.Layer):
    """Per-pixel SSIM distance clamp((1 - SSIM(x, y)) / 2, 0, 1), (B,C,H,W) (docs/METHOD.md, section 4). x, y,
    x^2 + y^2 and xy are padded and pooled in one call (only sigma_x^2 + sigma_y^2 occurs, so pool(x^2 + y^2) replaces
    pool(x^2) and pool(y^2); equal to float rounding). ``y_stats = ssim.target_stats(y)`` reuses a target's stats."""

    C1 = 0.01 ** 2
    C2 = 0.03 ** 2

    @staticmethod
    def _pool(stats):
        return mean_filter3(reflection_pad1(stats))

    def target_stats(self, y):
        """Pooled (mu_y, E[y^2]) of a target image, for reuse across ``forward`` calls."""
        return tuple(paddle.split(self._pool(paddle.concat([y, y * y], axis=1)), 2, axis=1))

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
    """SSIM statistics of ``target`` for every :func:`compute_reprojection_loss` with it (no gradient flows in)."""
    return _SSIM.target_stats(target.detach() if not target.stop_gradient else target)


def compute_reprojection_loss(pred, target, no_ssim=False, target_stats=None):
    """Photometric error pe = 0.85 mean_c SSIM + 0.15 mean_c |pred - target| (``no_ssim``: the L1 term
    only), (B,1,H,W). ``target_stats``: from :func:`reprojection_target_stats` (targets without gradient)."""
    abs_diff = paddle.abs(target - pred)
    if no_ssim:
        return paddle.mean(abs_diff, axis=1, keepdim=True)
    return paddle.mean(0.85 * _SSIM(pred, target, target_stats) + 0.15 * abs_diff, axis=1, keepdim=True)


def neighbour_diff(x, axis):
    """x[..., i] - x[..., i + 1] along ``axis`` (2: rows, 3: columns). CPU twin: ``cpu_kernels.neighbour_diff``."""
    if cpu_kernels.active(x):
        return cpu_kernels.neighbour_diff(x, axis)
    if axis == 3:
        return x[:, :, :, :-1] - x[:, :, :, 1:]
    return x[:, :, :-1, :] - x[:, :, 1:, :]


def get_smooth_loss(disp, img):
    """Edge-aware smoothness (a scalar; docs/METHOD.md, section 4) of ``disp`` as given (the caller normalises it)."""
    gdx = paddle.abs(neighbour_diff(disp, 3))
    gdy = paddle.abs(neighbour_diff(disp, 2))
    gix = paddle.mean(paddle.abs(img[:, :, :, :-1] - img[:, :, :, 1:]), axis=1, keepdim=True)
    giy = paddle.mean(paddle.abs(img[:, :, :-1, :] - img[:, :, 1:, :]), axis=1, keepdim=True)
    return paddle.mean(gdx * paddle.exp(-gix)) + paddle.mean(gdy * paddle.exp(-giy))


def compute_loss_masks(reprojection_loss, identity_reprojection_loss, depth_hint_reprojection_loss):
    """Per-pixel argmin masks (docs/METHOD.md, section 4) -> (reprojection_mask, hint_mask or None), float (B,1,H,W)
    without gradient. The argmin runs over [reprojection, identity, hint] (those given), ties going to the first; the
    reprojection mask is argmin != identity (all ones without one), the hint mask argmin == hint."""
    identity, hint = identity_reprojection_loss, depth_hint_reprojection_loss
    parts = [reprojection_loss] + [loss for loss in (identity, hint) if loss is not None]
    idxs = paddle.argmin(paddle.concat(parts, axis=1), axis=1, keepdim=True)
    dtype = reprojection_loss.dtype
    reprojection_mask = paddle.ones_like(reprojection_loss) if identity is None else (idxs != 1).astype(dtype)
    hint_mask = None if hint is None else (idxs == len(parts) - 1).astype(dtype)
    return reprojection_mask, hint_mask


def compute_proxy_supervised_loss(pred, target, valid_pixels, loss_mask):
    """Depth-hint loss: sum(log(1 + |target - pred|) * valid * mask) / (sum(mask) + 1e-7)."""
    loss = paddle.log1p(paddle.abs(target - pred)) * valid_pixels * loss_mask
    return paddle.sum(loss) / (paddle.sum(loss_mask) + 1e-7)


# ----------------------------------------------------------------------------- metrics
# Evaluation constants (docs/METHOD.md, section 6), shared by evaluation, hint scoring and training metrics.
MIN_DEPTH = 1e-3
MAX_DEPTH = 80.0
# Garg/Eigen crop as fractions of the ground-truth height (rows) and width (cols).
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


def garg_crop_bounds(height, width):
    """(top, bottom, left, right) of the Garg crop for a ground-truth map of this size."""
    return tuple(int(f * n) for f, n in zip(GARG_CROP, (height, height, width, width)))


class DepthErrors(collections.namedtuple("DepthErrors", "abs_rel sq_rel rmse rmse_log a1 a2 a3")):
    """The seven depth metrics, also by name: ``errors.abs_rel``, ``errors["abs_rel"]``, ``as_dict()``."""

    NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else super().__getitem__(key)

    def as_dict(self):
        return self._asdict()


def compute_depth_errors(gt, pred):
    """:class:`DepthErrors` of floats between numpy arrays of valid ground truth and prediction
    (docs/METHOD.md, section 6)."""
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    thresh = np.maximum(gt / pred, pred / gt)
    a1, a2, a3 = (np.mean(thresh < 1.25 ** k) for k in (1, 2, 3))
    diff = gt - pred
    rmse = np.sqrt(np.mean(diff * diff))
    log_diff = np.log(gt) - np.log(pred)
    rmse_log = np.sqrt(np.mean(log_diff * log_diff))
    abs_rel = np.mean(np.abs(diff) / gt)
    sq_rel = np.mean(diff * diff / gt)
    return DepthErrors(*(float(v) for v in (abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3)))


def median_scaled_errors(gt, pred, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH):
    """Monodepth2's training-time depth metrics of a batch (numpy ``[B, 1, H, W]``, ``pred``
    at the ground truth's size): Garg crop, median scaling, clamp to the depth range; ``{}``
    when no pixel has ground truth. Returns ``{"de/abs_rel": ..., ...}``."""
    top, bottom, left, right = garg_crop_bounds(*gt.shape[-2:])
    mask = np.zeros(gt.shape, bool)
    mask[..., top:bottom, left:right] = gt[..., top:bottom, left:right] > 0
    if not mask.any():
        return {}
    g, p = gt[mask], np.clip(pred[mask], min_depth, max_depth)
    p = np.clip(p * (np.median(g) / np.median(p)), min_depth, max_depth)
    return {"de/" + k: v for k, v in zip(DepthErrors.NAMES, compute_depth_errors(g, p))}
