"""Fused SGM depth hints for one stereo pair (Watson et al. 2019; docs/METHOD.md, section 5):
the 12 OpenCV SGBM matchers and the per-pixel choice among their candidate depths.

:class:`HintComputer` turns a uint8 RGB pair into the 12 candidate depths
(:meth:`~HintComputer.candidates`) and picks, per pixel, the candidate whose warp of the
other image best matches the base image by the training loss's photometric error
(:meth:`~HintComputer.fuse`, tiled; :meth:`~HintComputer.fuse_reference`, the same
written plainly over the whole image). The warp and the error are layers.py's, the ones
training uses. precompute_depth_hints.py runs this over a data set; Paddle is imported
only when a HintComputer is made (in the precompute's worker processes).
"""
import numpy as np

from camera import KITTI_K, NETWORK_BASELINE, scale_intrinsics

BLOCK_SIZES = (1, 2, 3)
NUM_DISPARITIES = (64, 96, 128, 160)
MATCHERS = tuple((b, n) for b in BLOCK_SIZES for n in NUM_DISPARITIES)
# the narrowest image every matcher takes: OpenCV's SGBM needs
# width - numDisparities > blockSize // 2 (minDisparity 0), else it raises per image
MIN_WIDTH = max(n + b // 2 for b, n in MATCHERS) + 1  # 162: 160 disparities, block size 3
STRIP_ROWS = 16   # fusion tile height (kept rows; +1-row halo each side)
TILE_COLS = 64    # fusion tile width (kept columns; +1-column halo each side)


def _tiles(total, size):
    """Blocks ``(keep0, keep1, crop0, crop1)`` of ``size`` indices covering range(total), each in a
    crop of ``size + 2`` with a neighbour on each side (shifted inwards at the borders)."""
    if total <= size + 2:
        yield 0, total, 0, total
        return
    for k0 in range(0, total, size):
        c0 = min(max(k0 - 1, 0), total - size - 2)
        yield k0, min(k0 + size, total), c0, c0 + size + 2


def make_matchers():
    """The 12 SGBM matchers (docs/METHOD.md, section 5), in MATCHERS order."""
    import cv2
    return [cv2.StereoSGBM_create(minDisparity=0, numDisparities=n, blockSize=b, P1=36, P2=288, preFilterCap=63,
                                  uniquenessRatio=10, speckleWindowSize=100, speckleRange=16) for b, n in MATCHERS]


def disparity_to_depth(disp, focal):
    """Pixel disparity -> depth ``focal * 0.1 / d`` where d > 0, else 0 (no match); ``focal``: fx in pixels."""
    disp = np.asarray(disp, dtype=np.float32)
    return np.divide(np.float32(focal * NETWORK_BASELINE), disp, out=np.zeros_like(disp), where=disp > 0)


def select(cands, pe):
    """Per pixel the depth of the candidate with the smallest error (first on ties); "no match" gives 0."""
    return np.take_along_axis(cands, np.argmin(pe, axis=0)[None], 0)[0].astype(np.float32)


class HintComputer:
    """SGBM candidates and their fusion for one image size and camera (one per worker and K).
    ``K``: normalised 4x4 intrinsics (default KITTI's); its fx also converts disparity to
    depth, so a candidate's warp moves each pixel by exactly its disparity."""

    def __init__(self, height, width, K=None, strip_rows=STRIP_ROWS, tile_cols=TILE_COLS):
        import paddle
        import layers
        self.paddle, self.layers = paddle, layers
        self.K_full = scale_intrinsics(KITTI_K if K is None else K, width, height)
        self.focal = float(self.K_full[0, 0])
        self.matchers = make_matchers()
        # OpenCV's half-window is blockSize // 2, so blockSize 2 runs exactly like 3: run once
        keys = [((b // 2) * 2 + 1, nd) for b, nd in MATCHERS]
        firsts = sorted({keys.index(key) for key in keys})
        self.unique = [self.matchers[k] for k in firsts]
        self.unique_index = np.array([firsts.index(keys.index(key)) for key in keys])
        self.row_tiles = list(_tiles(height, strip_rows))
        self.col_tiles = list(_tiles(width, tile_cols))
        hs = self.row_tiles[0][3] - self.row_tiles[0][2]
        ws = self.col_tiles[0][3] - self.col_tiles[0][2]
        self.crop_shape = (hs, ws)
        # a crop's grid in whole-image units: Project3D divides x by ws-1 and y by hs-1,
        # so K's rows are scaled by (ws-1)/(W-1) and (hs-1)/(H-1)
        scale = np.diag([(ws - 1) / max(width - 1, 1), (hs - 1) / max(height - 1, 1), 1, 1])
        self.K_proj = (scale @ self.K_full).astype(np.float32)
        # crop cameras: the whole image's with the principal point shifted by the offset
        self.inv_K_crop = {}
        for r0, c0 in {(r[2], c[2]) for r in self.row_tiles for c in self.col_tiles}:
            K = self.K_full.copy()
            K[:2, 2] -= (c0, r0)
            self.inv_K_crop[(r0, c0)] = np.linalg.pinv(K).astype(np.float32)
        self.T = {s: np.array([[1, 0, 0, s * NETWORK_BASELINE], [0, 1, 0, 0], [0, 0, 1, 0],
                               [0, 0, 0, 1]], np.float32) for s in (-1, 1)}
        self.backproject = layers.BackprojectDepth(1, hs, ws)
        self.project = layers.Project3D(1, hs, ws)
        self._whole = None  # whole-image layers of fuse_reference, made on first use

    def candidates(self, left, right, side):
        """(12, H, W) float32 candidate depths for base ``side`` from uint8 RGB images.
        SGBM matches for its left input: a right base mirrors the pair and the result."""
        base, other = (left, right) if side == "l" else (right[:, ::-1], left[:, ::-1])
        base, other = np.ascontiguousarray(base), np.ascontiguousarray(other)
        disp = np.stack([m.compute(base, other) for m in self.unique]) / np.float32(16)
        disp = disp if side == "l" else disp[:, :, ::-1]
        return np.ascontiguousarray(disparity_to_depth(disp, self.focal)[self.unique_index])

    def _inputs(self, base, other, side, baseline_sign):
        other_t = self.paddle.to_tensor(other.transpose(2, 0, 1)[None].astype(np.float32) / 255)
        return (baseline_sign or (-1 if side == "l" else 1),
                base.transpose(2, 0, 1).astype(np.float32) / 255, other_t)

    def fuse(self, base, other, cands, side, baseline_sign=None, return_pe=True):
        """Per pixel, the candidate of ``cands`` (N, H, W; 0 = no match) whose warp of
        ``other`` best matches ``base`` (uint8 RGB (H, W, 3)) by photometric error.
        ``baseline_sign`` overrides the sign (-1 for a left base, +1 for a right base).
        Returns ``(hint (H, W), pe (N, H, W))`` float32 (pe None unless ``return_pe``).

        "No match" competes (Watson et al. 2019; docs/METHOD.md, section 5): a depth-0
        pixel back-projects to the camera centre, Project3D sends it to x = +-inf, y = 0,
        and the border-padded warp samples the other image's top-row corner pixel.

        Same choice as :meth:`fuse_reference` but for float-rounding ties, and faster:
        ``strip_rows`` x ``tile_cols`` tiles in crops with a 1-pixel halo, a row strip's tiles
        in one batch, candidates equal on a crop scored once (so those without any match on
        a crop, all warped to one constant colour, are one job). A crop is a camera of its
        own (principal point shifted, Project3D's K scaled to whole-image grid units), so warp
        samples the whole other image; reflection padding reaches only the halo."""
        paddle, layers = self.paddle, self.layers
        sign, base_f, other_t = self._inputs(base, other, side, baseline_sign)
        hs, ws = self.crop_shape
        hint = np.empty(cands.shape[1:], np.float32)
        pe = np.empty(cands.shape, np.float32) if return_pe else None
        for y0, y1, r0, r1 in self.row_tiles:
            tiles, depths, inv_Ks, targets = [], [], [], []
            for x0, x1, c0, c1 in self.col_tiles:
                crops = cands[:, r0:r1, c0:c1]
                groups = {}  # crop bytes -> candidates equal on the crop (exact comparison)
                for k in range(len(cands)):
                    groups.setdefault(crops[k].tobytes(), []).append(k)
                tiles.append((x0, x1, c0, list(groups.values())))
                depths += [crops[ks[0]] for ks in groups.values()]
                inv_Ks += [self.inv_K_crop[(r0, c0)]] * len(groups)
                targets += [base_f[:, r0:r1, c0:c1]] * len(groups)
            m = len(depths)
            points = self.backproject(paddle.to_tensor(np.stack(depths)[:, None]),
                                      paddle.to_tensor(np.stack(inv_Ks)))
            grid = self.project(points, paddle.to_tensor(np.repeat(self.K_proj[None], m, 0)),
                                paddle.to_tensor(np.repeat(self.T[sign][None], m, 0)))
            # one warp call for the whole strip: the m grids stacked as one tall grid
            warped = layers.warp(other_t, grid.reshape([1, m * hs, ws, 2]))
            warped = warped.reshape([3, m, hs, ws]).transpose([1, 0, 2, 3])
            err = layers.compute_reprojection_loss(warped, paddle.to_tensor(np.stack(targets)))
            err = err.numpy()[:, 0, y0 - r0:y1 - r0]
            j = 0
            for x0, x1, c0, groups in tiles:
                e = err[j:j + len(groups), :, x0 - c0:x1 - c0]
                j += len(groups)
                first = [ks[0] for ks in groups]  # groups are ordered by their first member
                hint[y0:y1, x0:x1] = select(cands[first, y0:y1, x0:x1], e)
                if return_pe:
                    for ks, e_k in zip(groups, e):
                        pe[ks, y0:y1, x0:x1] = e_k
        return hint, pe

    def fuse_reference(self, base, other, cands, side, baseline_sign=None):
        """:meth:`fuse` written plainly, all candidates over the whole image in one batch (slow;
        for tests and bench/). Returns ``(hint (H, W), pe (N, H, W))``."""
        paddle, layers = self.paddle, self.layers
        n, H, W = cands.shape
        sign, base_f, other_t = self._inputs(base, other, side, baseline_sign)
        if self._whole is None:
            self._whole = (layers.BackprojectDepth(1, H, W), layers.Project3D(1, H, W))

        def rep(a):
            return paddle.to_tensor(np.repeat(np.asarray(a, np.float32)[None], n, 0))

        points = self._whole[0](paddle.to_tensor(cands[:, None]), rep(np.linalg.pinv(self.K_full)))
        grid = self._whole[1](points, rep(self.K_full), rep(self.T[sign]))
        warped = layers.warp(other_t.expand([n, 3, H, W]), grid)
        pe = layers.compute_reprojection_loss(warped, rep(base_f)).numpy()[:, 0]
        return select(cands, pe), pe
