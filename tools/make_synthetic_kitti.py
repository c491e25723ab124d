"""Synthetic KITTI-layout data: a ray-cast procedural street seen by a KITTI-like stereo rig.

Every machine can build this data set in seconds, so the tests and the demo have real
stereo + temporal sequences, LiDAR, calibration, improved ground truth and split files in
exactly the KITTI raw layout (docs/METHOD.md, section 1)::

    <out>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    <out>/<date>/<date>_drive_<NNNN>_sync/image_0{2,3}/data/<frame:010d>.jpg|png
    <out>/<date>/<date>_drive_<NNNN>_sync/velodyne_points/data/<frame:010d>.bin
    <out>/<date>/<date>_drive_<NNNN>_sync/proj_depth/groundtruth/image_0{2,3}/<frame:010d>.png
    <out>/<date>/<date>_drive_<NNNN>_sync/true_depth/image_0{2,3}/<frame:010d>.npy
    <out>/splits/synthetic/{train_files,val_files}.txt
    <out>/splits/eigen/test_files.txt, <out>/splits/eigen_benchmark/test_files.txt

Scene (camera coordinates: x right, y down, z forward; the ground is the plane y = 1.65):
a road with markings, sidewalks, buildings (boxes with windows) on both sides, parked cars
(boxes), thin poles (vertical cylinders) and sign plates, and a building row closing the
street far ahead. The rig only translates (forward 0.8-1.0 m per frame, a slight lateral
sway), no rotation. Intrinsics fx = 0.58 W, fy = 1.92 H, cx = 0.5 W, cy = 0.5 H (so the
the normalised K of docs/METHOD.md is exact), baseline 0.54 m (camera 3 is 0.54 m right of camera 2).

Pixel convention: pixel (u, v) is the ray through K^-1 [u, v, 1] (pixel centres at integer
coordinates, as in the back-projection of docs/METHOD.md, section 3). The true depth stored for it is the z of
the first surface hit. ``generate_depth_map`` (docs/METHOD.md, section 6, Monodepth2/KITTI) stores a
LiDAR point projected to (u', v') at pixel (round(u') - 1, round(v') - 1), so the calibration
written here has the principal point shifted by +1 px (cx + 1, cy + 1) in ``P_rect_0{2,3}``:
exported ground truth then lands exactly on the pixel whose true depth it is. The LiDAR
points are the 3-D hits of a random ~7% of the left camera's pixels in the lower two thirds
of the image (plus a few points behind the car), in velodyne coordinates (x forward, y left,
z up) with a velo->cam transform whose z translation is 0, so velodyne x == camera z and
``export_gt_depth`` (vel_depth=True) reproduces the true depth exactly (up to float32).

Sky pixels have true depth 0 (no surface). Improved ground truth (proj_depth/groundtruth)
holds every surface pixel of the lower two thirds with depth < 256 m, as uint16 depth * 256.

Deterministic for a seed. CLI::

    python tools/make_synthetic_kitti.py --out data/synthetic_kitti [--num_drives 3]
        [--frames_per_drive 60] [--width 640] [--height 192] [--seed 0] [--png]
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import kitti_utils  # noqa: E402  (the KITTI layout: every path below is built there)

BASELINE = 0.54          # metres, camera 2 -> camera 3 (camera 3 is to the right)
CAM_HEIGHT = 1.65        # metres above the ground
FX_N, FY_N, CX_N, CY_N = 0.58, 1.92, 0.5, 0.5
DATES = ("2011_09_26", "2011_09_28")
LIDAR_FRACTION = 0.07
LIGHT = np.array([-0.4, 0.75, 0.5]) / np.linalg.norm([-0.4, 0.75, 0.5])   # sun direction
VELO_T = np.array([0.0, -0.08, 0.0])     # velodyne origin in camera coords (8 cm above)
# velo (x fwd, y left, z up) -> camera (x right, y down, z fwd)
VELO_R = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])

# surface kinds
SKY, GROUND, BUILDING, CAR, POLE, SIGN = -1, 0, 1, 2, 3, 4


# ----------------------------------------------------------------------------- scene


class Scene:
    """Procedural street for one drive: boxes (buildings, cars, signs) and cylinders (poles).

    Attributes: ``road_half`` (m), ``walk`` (sidewalk width), ``box_min``/``box_max`` (N,3),
    ``box_kind`` (N,), ``box_color`` (N,3), ``box_param`` (N,4) pattern parameters,
    ``pole`` (M,5) = (x, z, radius, y_top, y_bottom), ``pole_color`` (M,3).
    """

    def __init__(self, rng, length):
        # wide enough that parked cars stay >= ~3 m beside the camera (as on real streets):
        # nearer objects make abs_rel explode on a few pixels and dominate the metrics
        self.road_half = rng.uniform(6.5, 7.5)
        self.walk = rng.uniform(2.0, 3.0)
        self.lane_dash = rng.uniform(2.5, 3.5)
        boxes, kinds, colors, params = [], [], [], []

        def add(bmin, bmax, kind, color, param):
            boxes.append((bmin, bmax))
            kinds.append(kind)
            colors.append(color)
            params.append(param)

        z_lo, z_hi = -30.0, length + 100.0
        g = CAM_HEIGHT
        edge = self.road_half + self.walk
        for side in (-1.0, 1.0):
            # buildings: a row of boxes with random setbacks, lengths, heights
            z = z_lo
            while z < z_hi:
                blen = rng.uniform(8.0, 22.0)
                gap = rng.uniform(0.0, 3.0) if rng.random() < 0.3 else 0.0
                setback = rng.uniform(0.0, 3.0)
                height = rng.uniform(7.0, 20.0)
                depth = rng.uniform(8.0, 15.0)
                near = edge + setback
                x0, x1 = (-(near + depth), -near) if side < 0 else (near, near + depth)
                color = rng.uniform(0.25, 0.85, 3) * rng.uniform(0.7, 1.0)
                param = (rng.uniform(2.2, 3.6), rng.uniform(2.8, 3.4),
                         rng.uniform(0.45, 0.7), rng.uniform(0, 100))
                add((x0, g - height, z), (x1, g, z + blen), BUILDING, color, param)
                z += blen + gap
            # parked cars along the kerb
            z = z_lo + rng.uniform(0, 6)
            while z < z_hi:
                if rng.random() < 0.6:
                    clen, cw, ch = rng.uniform(3.8, 4.8), rng.uniform(1.6, 1.9), rng.uniform(1.35, 1.7)
                    xin = self.road_half - rng.uniform(0.2, 0.5)
                    x0, x1 = (-xin, -xin + cw) if side < 0 else (xin - cw, xin)
                    color = rng.uniform(0.05, 0.95, 3)
                    add((x0, g - ch, z), (x1, g, z + clen), CAR, color,
                        (rng.uniform(0.35, 0.5), 0, 0, rng.uniform(0, 100)))
                    z += clen + rng.uniform(0.8, 3.0)
                else:
                    z += rng.uniform(3.0, 9.0)
        # the far end of the street: a building row across it
        add((-80.0, g - 30.0, z_hi), (80.0, g, z_hi + 10.0), BUILDING,
            np.array([0.55, 0.5, 0.45]), (3.0, 3.2, 0.55, 7.0))
        poles, pole_colors = [], []
        z = z_lo + rng.uniform(0, 8)
        while z < z_hi:
            side = -1.0 if rng.random() < 0.5 else 1.0
            x = side * (self.road_half + rng.uniform(0.4, 1.2))
            r = rng.uniform(0.05, 0.12)
            h = rng.uniform(3.0, 6.5)
            poles.append((x, z, r, g - h, g))
            pole_colors.append(rng.uniform(0.3, 0.8) * np.array([1.0, 1.0, 1.05]))
            if rng.random() < 0.5:          # a sign plate facing the camera on top of the pole
                sw, sh = rng.uniform(0.5, 0.9), rng.uniform(0.5, 0.9)
                y_top = g - h - rng.uniform(-0.3, 0.2) - sh
                color = np.array([[0.8, 0.1, 0.1], [0.1, 0.25, 0.8], [0.9, 0.8, 0.1]])[rng.integers(3)]
                add((x - sw / 2, y_top, z - r - 0.04), (x + sw / 2, y_top + sh, z - r),
                    SIGN, color, (sw, sh, 0, rng.uniform(0, 100)))
            z += rng.uniform(6.0, 18.0)
        self.box_min = np.array([b[0] for b in boxes], dtype=np.float64)
        self.box_max = np.array([b[1] for b in boxes], dtype=np.float64)
        self.box_kind = np.array(kinds, dtype=np.int64)
        self.box_color = np.array(colors, dtype=np.float64)
        self.box_param = np.array(params, dtype=np.float64)
        self.pole = np.array(poles, dtype=np.float64).reshape(-1, 5)
        self.pole_color = np.array(pole_colors, dtype=np.float64).reshape(-1, 3)


# ----------------------------------------------------------------------------- textures


class Noise:
    """Band-limited multi-octave value noise from a random periodic table (fast gathers)."""

    def __init__(self, seed, size=512):
        rng = np.random.default_rng(seed + 7919)
        self.size = size
        assert size & (size - 1) == 0, "table size must be a power of two"
        self.table = rng.random((size, size)).astype(np.float32)
        self.flat = self.table.ravel()

    def octave(self, s, t):
        """Smooth value noise in [-0.5, 0.5] at lattice coordinates (s, t)."""
        n = self.size
        s0 = np.floor(s)
        t0 = np.floor(t)
        fs = (s - s0).astype(np.float32)
        ft = (t - t0).astype(np.float32)
        fs = fs * fs * (3 - 2 * fs)
        ft = ft * ft * (3 - 2 * ft)
        i0 = s0.astype(np.int64) & (n - 1)
        j0 = t0.astype(np.int64) & (n - 1)
        i1 = (i0 + 1) & (n - 1)
        j1 = (j0 + 1) & (n - 1)
        flat = self.flat
        r0 = i0 * n
        r1 = i1 * n
        a = flat[r0 + j0]
        a += (flat[r1 + j0] - a) * fs
        b = flat[r0 + j1]
        b += (flat[r1 + j1] - b) * fs
        a += (b - a) * ft
        a -= 0.5
        return a

    def fbm(self, s, t, footprint, freqs=(0.5, 1.5, 4.0, 10.0, 25.0, 60.0),
            amps=(0.5, 0.45, 0.4, 0.3, 0.3, 0.3)):
        """Sum of octaves; an octave (lattice cell 1/f metres) fades out as its cell shrinks
        from 1.5 to 0.75 pixel footprints (so the texture does not alias and stays consistent
        across views and frames). Inputs are flat arrays."""
        out = np.zeros(s.shape, np.float32)
        inv_fp = 1.0 / np.maximum(footprint, 1e-6)
        for k, (f, a) in enumerate(zip(freqs, amps)):
            w = np.clip((inv_fp / f - 0.75) / 0.75, 0.0, 1.0).astype(np.float32)
            live = np.nonzero(w > 0)[0]
            if live.size == 0:
                continue
            if live.size == w.size:
                out += a * w * self.octave(s * f + 37.0 * k, t * f + 91.0 * k)
            else:
                out[live] += a * w[live] * self.octave(s[live] * f + 37.0 * k, t[live] * f + 91.0 * k)
        return out


def _smooth_pulse(x, width, period, footprint):
    """1 inside [0, width) of each period, 0 outside, edges softened by the pixel footprint."""
    p = np.mod(x, period)
    soft = np.maximum(footprint, 1e-3)
    up = np.clip(p / soft + 0.5, 0, 1)
    down = np.clip((width - p) / soft + 0.5, 0, 1)
    return np.minimum(up, down)


# ----------------------------------------------------------------------------- rendering


def intrinsics(width, height):
    """Pixel intrinsics (fx, fy, cx, cy) of the synthetic rig."""
    return FX_N * width, FY_N * height, CX_N * width, CY_N * height


def _rays(width, height):
    fx, fy, cx, cy = intrinsics(width, height)
    u = np.arange(width, dtype=np.float64)
    v = np.arange(height, dtype=np.float64)
    dx = (u - cx) / fx
    dy = (v - cy) / fy
    return dx, dy


def render(scene, noise, cam, width, height, light):
    """Ray-cast one view from camera centre ``cam`` (3,). Returns (rgb float32 HxWx3 in
    [0,1], depth float32 HxW with 0 for sky)."""
    fx, fy, cx, cy = intrinsics(width, height)
    dx1, dy1 = _rays(width, height)
    DX, DY = np.meshgrid(dx1, dy1)
    H, W = height, width
    depth = np.full((H, W), np.inf)
    kind = np.full((H, W), SKY, np.int64)
    obj = np.full((H, W), -1, np.int64)
    naxis = np.zeros((H, W), np.int64)   # 0:x 1:y 2:z, 3: cylinder
    nsign = np.ones((H, W))
    ox, oy, oz = cam

    # ground plane y = CAM_HEIGHT (camera at y = 0)
    with np.errstate(divide="ignore"):
        tg = np.where(DY > 1e-9, (CAM_HEIGHT - oy) / np.maximum(DY, 1e-9), np.inf)
    hit = tg < depth
    depth[hit] = tg[hit]
    kind[hit] = GROUND
    naxis[hit] = 1
    nsign[hit] = -1.0

    def window(xmin, xmax, ymin, ymax, zmin, zmax):
        """Pixel window (u0,u1,v0,v1) covering the projection of a box (clipped to z>0.3)."""
        zmin = max(zmin - oz, 0.3)
        zmax = zmax - oz
        if zmax <= 0.3:
            return None
        xs = np.array([xmin - ox, xmax - ox])
        ys = np.array([ymin - oy, ymax - oy])
        zs = np.array([zmin, zmax])
        us = fx * xs[:, None] / zs[None, :] + cx
        vs = fy * ys[:, None] / zs[None, :] + cy
        u0 = max(int(np.floor(us.min())), 0)
        u1 = min(int(np.ceil(us.max())) + 1, W)
        v0 = max(int(np.floor(vs.min())), 0)
        v1 = min(int(np.ceil(vs.max())) + 1, H)
        if u0 >= u1 or v0 >= v1:
            return None
        return u0, u1, v0, v1

    # boxes (slab test within each box's screen window)
    for i in range(len(scene.box_kind)):
        bmin, bmax = scene.box_min[i], scene.box_max[i]
        win = window(bmin[0], bmax[0], bmin[1], bmax[1], bmin[2], bmax[2])
        if win is None:
            continue
        u0, u1, v0, v1 = win
        dxw = dx1[u0:u1][None, :]
        dyw = dy1[v0:v1][:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            idx = 1.0 / np.where(np.abs(dxw) < 1e-12, 1e-12, dxw)
            idy = 1.0 / np.where(np.abs(dyw) < 1e-12, 1e-12, dyw)
            tx0, tx1 = (bmin[0] - ox) * idx, (bmax[0] - ox) * idx
            ty0, ty1 = (bmin[1] - oy) * idy, (bmax[1] - oy) * idy
        tz0, tz1 = bmin[2] - oz, bmax[2] - oz
        txn, txf = np.minimum(tx0, tx1), np.maximum(tx0, tx1)
        tyn, tyf = np.minimum(ty0, ty1), np.maximum(ty0, ty1)
        tzn, tzf = min(tz0, tz1), max(tz0, tz1)
        txn_b = np.broadcast_to(txn, (v1 - v0, u1 - u0))
        tyn_b = np.broadcast_to(tyn, (v1 - v0, u1 - u0))
        tnear = np.maximum(np.maximum(txn_b, tyn_b), tzn)
        tfar = np.minimum(np.minimum(txf, tyf), tzf)
        sub = depth[v0:v1, u0:u1]
        hit = (tnear <= tfar) & (tnear > 0.05) & (tnear < sub)
        if not hit.any():
            continue
        ax = np.where(tnear == txn_b, 0, np.where(tnear == tyn_b, 1, 2))
        dirs = (np.broadcast_to(dxw, hit.shape), np.broadcast_to(dyw, hit.shape), 1.0)
        sgn = np.where(ax == 0, -np.sign(dirs[0]), np.where(ax == 1, -np.sign(dirs[1]), -1.0))
        sub[hit] = tnear[hit]
        kind[v0:v1, u0:u1][hit] = scene.box_kind[i]
        obj[v0:v1, u0:u1][hit] = i
        naxis[v0:v1, u0:u1][hit] = ax[hit]
        nsign[v0:v1, u0:u1][hit] = sgn[hit]

    # poles: vertical cylinders
    for i in range(len(scene.pole)):
        px, pz, r, ytop, ybot = scene.pole[i]
        win = window(px - r, px + r, ytop, ybot, pz - r, pz + r)
        if win is None:
            continue
        u0, u1, v0, v1 = win
        dxw = dx1[u0:u1][None, :]
        dyw = dy1[v0:v1][:, None]
        ex, ez = ox - px, oz - pz
        a = dxw * dxw + 1.0
        b = 2.0 * (dxw * ex + ez)
        c = ex * ex + ez * ez - r * r
        disc = b * b - 4 * a * c
        ok = disc >= 0
        t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        y = oy + t * dyw
        sub = depth[v0:v1, u0:u1]
        hit = ok & (t > 0.05) & (y >= ytop) & (y <= ybot) & (t < sub)
        if not hit.any():
            continue
        sub[hit] = np.broadcast_to(t, hit.shape)[hit]
        kind[v0:v1, u0:u1][hit] = POLE
        obj[v0:v1, u0:u1][hit] = i
        naxis[v0:v1, u0:u1][hit] = 3

    rgb = shade(scene, noise, cam, DX, DY, depth, kind, obj, naxis, nsign, fx, light)
    depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    return rgb, depth


def shade(scene, noise, cam, DX, DY, depth, kind, obj, naxis, nsign, fx, light):
    """Lambertian shading with procedural textures; sky is a gradient with faint clouds.
    Works on the flattened surface pixels only."""
    H, W = depth.shape
    rgb = np.zeros((H * W, 3), np.float32)
    ox, oy, oz = cam
    kind_f = kind.ravel()
    surf = np.nonzero(kind_f != SKY)[0]
    sky = np.nonzero(kind_f == SKY)[0]
    dxs = DX.ravel()[surf]
    dys = DY.ravel()[surf]
    t = depth.ravel()[surf]
    kd = kind_f[surf]
    ob = obj.ravel()[surf]
    ax = naxis.ravel()[surf]
    sg = nsign.ravel()[surf]
    X = ox + t * dxs
    Y = oy + t * dys
    Z = oz + t
    # normals
    nx = np.where(ax == 0, sg, 0.0)
    ny = np.where(ax == 1, sg, 0.0)
    nz = np.where(ax == 2, sg, 0.0)
    cyl = ax == 3
    if cyl.any():
        pole = scene.pole[ob[cyl]]
        nx[cyl] = (X[cyl] - pole[:, 0]) / pole[:, 2]
        nz[cyl] = (Z[cyl] - pole[:, 1]) / pole[:, 2]
    # pixel footprint in metres on the surface (for band-limiting)
    norm = np.sqrt(dxs * dxs + dys * dys + 1.0)
    cosang = np.abs(nx * dxs + ny * dys + nz) / norm
    footprint = (t * norm / fx) / np.maximum(cosang, 0.08)
    # surface coordinates (s, q) per face orientation
    s = np.where(ax == 0, Z, X)
    q = np.where(ax == 1, Z, Y)
    if cyl.any():
        s[cyl] = np.arctan2(nz[cyl], nx[cyl]) * scene.pole[ob[cyl], 2]
    oid = np.maximum(ob, 0).astype(np.float64)
    tex = noise.fbm(s + 13.7 * oid, q + 7.1 * oid, footprint)
    diffuse = 0.45 + 0.55 * np.clip(-(nx * light[0] + ny * light[1] + nz * light[2]), 0, 1)
    base = np.zeros((len(surf), 3), np.float32)

    g = np.nonzero(kd == GROUND)[0]
    if g.size:
        xr = X[g]
        zr = Z[g]
        fp = footprint[g]
        road = np.abs(xr) < scene.road_half
        col = np.where(road[:, None], np.array([0.36, 0.36, 0.38]), np.array([0.62, 0.58, 0.52]))
        # road markings: dashed centre line, solid edge lines; kerb; sidewalk tiles
        centre = _smooth_pulse(xr + 0.075, 0.15, 1e6, fp) * _smooth_pulse(zr, scene.lane_dash, 2 * scene.lane_dash, fp)
        edge = _smooth_pulse(np.abs(xr) - (scene.road_half - 0.35), 0.15, 1e6, fp)
        kerb = _smooth_pulse(np.abs(xr) - scene.road_half, 0.25, 1e6, fp)
        tiles = 1.0 - 0.25 * np.maximum(_smooth_pulse(xr, 0.05, 0.6, fp), _smooth_pulse(zr, 0.05, 0.6, fp))
        tiles = np.where(road, 1.0, tiles)
        mark = np.maximum(centre, edge)[:, None]
        col = col * (1 - mark) + 0.92 * mark
        col = col * (1 - 0.5 * kerb[:, None]) + 0.5 * kerb[:, None] * np.array([0.8, 0.78, 0.7])
        base[g] = col * tiles[:, None]

    for k in (BUILDING, CAR, SIGN):
        m = np.nonzero(kd == k)[0]
        if not m.size:
            continue
        ids = ob[m]
        col = scene.box_color[ids]
        prm = scene.box_param[ids]
        fp = footprint[m]
        sm, qm = s[m], q[m]
        bmin, bmax = scene.box_min[ids], scene.box_max[ids]
        if k == BUILDING:
            # window grid on the walls (not roofs), darker ground floor band
            wall = ax[m] != 1
            wx = _smooth_pulse(sm + prm[:, 3], prm[:, 0] * prm[:, 2], prm[:, 0], fp)
            wy = _smooth_pulse(qm - bmin[:, 1] - 0.6, prm[:, 1] * 0.55, prm[:, 1], fp)
            low = qm > bmax[:, 1] - 3.0
            win = wx * wy * wall * (~low)
            glass = np.array([0.22, 0.26, 0.34]) + 0.15 * np.sin(ids * 1.7 + np.floor(sm / prm[:, 0]))[:, None]
            col = col * (1 - win[:, None]) + glass * win[:, None]
            col = np.where(low[:, None] & wall[:, None], col * 0.75, col)
        elif k == CAR:
            h = bmax[:, 1] - bmin[:, 1]
            rel = (qm - bmin[:, 1]) / h
            glass = (rel > 0.06) & (rel < prm[:, 0]) & (ax[m] != 1)
            wheel = rel > 0.85
            col = np.where(glass[:, None], np.array([0.25, 0.3, 0.36]), col)
            col = np.where(wheel[:, None], np.array([0.12, 0.12, 0.12]), col)
            stripe = _smooth_pulse(qm - bmin[:, 1] - h * 0.6, 0.08, 1e6, fp)
            col = col * (1 - 0.6 * stripe[:, None]) + 0.6 * stripe[:, None]
        else:
            # sign face: ring pattern around the plate centre
            cxs = (bmin[:, 0] + bmax[:, 0]) / 2
            cys = (bmin[:, 1] + bmax[:, 1]) / 2
            rr = np.sqrt((X[m] - cxs) ** 2 + (Y[m] - cys) ** 2) / (0.5 * np.minimum(prm[:, 0], prm[:, 1]))
            ring = _smooth_pulse(rr, 0.25, 0.5, fp / 0.3)
            front = ax[m] == 2
            col = np.where((front & (ring > 0.5))[:, None], np.array([0.95, 0.95, 0.95]), col)
        base[m] = col

    p = np.nonzero(kd == POLE)[0]
    if p.size:
        base[p] = scene.pole_color[ob[p]] * (1 - 0.4 * _smooth_pulse(Y[p], 0.3, 1.2, footprint[p]))[:, None]

    rgb[surf] = base * (diffuse * (1.0 + 1.1 * tex))[:, None]
    # sky: vertical gradient + faint clouds (a function of the ray direction only)
    if sky.size:
        dxk, dyk = DX.ravel()[sky], DY.ravel()[sky]
        vy = np.clip(-dyk / 0.3, 0, 1)
        col = np.array([0.75, 0.82, 0.9]) * (1 - vy[:, None]) + np.array([0.45, 0.6, 0.85]) * vy[:, None]
        cloud = noise.octave(dxk * 12 + 300.0, dyk * 30 + 300.0) + 0.5
        rgb[sky] = col + 0.12 * cloud[:, None]
    return np.clip(rgb, 0.0, 1.0).reshape(H, W, 3)


# ----------------------------------------------------------------------------- writing


def _fmt(a):
    return " ".join("%.12e" % float(x) for x in np.asarray(a).ravel())


def calib_texts(width, height):
    """Contents of calib_cam_to_cam.txt and calib_velo_to_cam.txt for the synthetic rig.

    P_rect_0{2,3} carry the principal point + 1 px (KITTI/MATLAB 1-based convention that
    generate_depth_map's ``round(u) - 1`` undoes)."""
    fx, fy, cx, cy = intrinsics(width, height)
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    lines = ["calib_time: 01-Jan-2020 00:00:00", "corner_dist: 9.950000e-02"]
    for cam, tx in (("00", 0.0), ("01", -BASELINE), ("02", 0.0), ("03", -BASELINE)):
        P = np.array([[fx, 0, cx + 1, fx * tx], [0, fy, cy + 1, 0], [0, 0, 1.0, 0]])
        lines += [
            f"S_{cam}: {_fmt([width, height])}",
            f"K_{cam}: {_fmt(K)}",
            f"D_{cam}: {_fmt(np.zeros(5))}",
            f"R_{cam}: {_fmt(np.eye(3))}",
            f"T_{cam}: {_fmt([-tx, 0, 0])}",
            f"S_rect_{cam}: {_fmt([width, height])}",
            f"R_rect_{cam}: {_fmt(np.eye(3))}",
            f"P_rect_{cam}: {_fmt(P)}",
        ]
    cam2cam = "\n".join(lines) + "\n"
    velo2cam = "\n".join([
        "calib_time: 01-Jan-2020 00:00:00",
        f"R: {_fmt(VELO_R)}",
        f"T: {_fmt(VELO_T)}",
        "delta_f: 0.000000e+00 0.000000e+00",
        "delta_c: 0.000000e+00 0.000000e+00",
    ]) + "\n"
    return cam2cam, velo2cam


def lidar_points(depth, width, height, rng):
    """Velodyne points (N,4) float32 from the left camera's true depth: the 3-D hits of a
    random ~7% of the surface pixels in the lower two thirds, plus a few points behind."""
    fx, fy, cx, cy = intrinsics(width, height)
    v, u = np.nonzero(depth > 0)
    keep = v >= height // 3
    v, u = v[keep], u[keep]
    sel = rng.random(len(v)) < LIDAR_FRACTION
    v, u = v[sel], u[sel]
    z = depth[v, u].astype(np.float64)
    cam = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], 1)
    velo = (cam - VELO_T) @ VELO_R          # R^T (cam - T) for each row
    behind = np.stack([rng.uniform(-30, -2, 50), rng.uniform(-10, 10, 50), rng.uniform(-1.7, 0, 50)], 1)
    pts = np.concatenate([velo, behind], 0)
    refl = rng.uniform(0, 1, (len(pts), 1))
    return np.concatenate([pts, refl], 1).astype(np.float32)


def true_depth_path(out_dir, folder, frame, side):
    """The renderer's true depth of one image (this data set only, not KITTI):
    ``<out>/<folder>/true_depth/image_0{2,3}/<frame:010d>.npy``."""
    return os.path.join(os.fspath(out_dir), folder, "true_depth", kitti_utils.camera_dir(side),
                        f"{int(frame):010d}.npy")


def _write_image(path, rgb, ext):
    import cv2
    bgr = (np.clip(rgb, 0, 1) * 255.0 + 0.5).astype(np.uint8)[..., ::-1]
    params = [int(cv2.IMWRITE_JPEG_QUALITY), 92] if ext == "jpg" else []
    if not cv2.imwrite(path, bgr, params):
        raise OSError(f"could not write {path}")


def _write_png16(path, depth):
    import cv2
    d = np.where((depth > 0) & (depth < 255.99), np.round(depth * 256.0), 0).astype(np.uint16)
    if not cv2.imwrite(path, d):
        raise OSError(f"could not write {path}")


def _drive_frames(num_frames, rng):
    """Camera-2 centres (F,3) for one drive: forward 0.8-1.0 m/frame, slight sway."""
    speed = rng.uniform(0.8, 1.0)
    x0 = rng.uniform(1.6, 2.2)
    amp, period, phase = rng.uniform(0.05, 0.25), rng.uniform(25, 60), rng.uniform(0, 2 * np.pi)
    f = np.arange(num_frames, dtype=np.float64)
    x = x0 + amp * np.sin(2 * np.pi * f / period + phase)
    return np.stack([x, np.zeros_like(f), speed * f], 1), speed


def _drive_setup(seed, d, frames_per_drive):
    """Deterministic (folder, centres, speed, scene, noise) of drive ``d``."""
    date = DATES[d % len(DATES)]
    folder = f"{date}/{date}_drive_{d + 1:04d}_sync"
    rng = np.random.default_rng([seed, d])
    centres, speed = _drive_frames(frames_per_drive, rng)
    scene = Scene(rng, float(centres[-1, 2]))
    noise = Noise(seed * 1000 + d)
    return folder, centres, speed, scene, noise


_DRIVE_CACHE = {}


def _frame_job(job):
    """Render and write frame ``i`` of drive ``d`` (both cameras, LiDAR, ground truth)."""
    out_dir, seed, d, frames_per_drive, i, width, height, ext = job
    key = (seed, d, frames_per_drive)
    if key not in _DRIVE_CACHE:
        _DRIVE_CACHE.clear()
        _DRIVE_CACHE[key] = _drive_setup(seed, d, frames_per_drive)
    folder, centres, _, scene, noise = _DRIVE_CACHE[key]
    rng = np.random.default_rng([seed, d, i, 7])
    for side, off in (("l", 0.0), ("r", BASELINE)):
        c = centres[i] + np.array([off, 0.0, 0.0])
        rgb, depth = render(scene, noise, c, width, height, LIGHT)
        _write_image(kitti_utils.image_path(out_dir, folder, i, side, "." + ext), rgb, ext)
        np.save(true_depth_path(out_dir, folder, i, side), depth)
        gt = depth.copy()
        gt[: height // 3] = 0
        _write_png16(kitti_utils.gt_depth_path(out_dir, folder, i, side), gt)
        if side == "l":
            pts = lidar_points(depth, width, height, rng)
            pts.tofile(kitti_utils.velodyne_path(out_dir, folder, i))
    return i


def make_synthetic_kitti(out_dir, num_drives=3, frames_per_drive=60, width=640, height=192,
                         seed=0, ext="jpg", progress=False, workers=1):
    """Write a synthetic KITTI raw tree under ``out_dir`` (see the module docstring).

    The last drive is held out for the eigen / eigen_benchmark test lists (with one drive,
    that drive is used for everything). ``workers`` > 1 renders frames in that many forked
    processes (the output does not depend on it). Returns an info dict: ``out_dir``,
    ``width``, ``height``, ``K`` (3x3 pixel intrinsics), ``baseline``, ``drives`` (folders),
    ``train_drives``, ``test_drive``, ``speeds`` (m/frame), ``centres`` (folder -> (F, 3)
    camera-2 centres in metres; camera 3 is +0.54 m in x; no rotation), ``ext``,
    ``splits`` (name -> folder).
    """
    ext = ext.lstrip(".").lower()
    if ext not in ("jpg", "png"):
        raise ValueError("ext must be 'jpg' or 'png'")
    if num_drives < 1 or frames_per_drive < 3:
        raise ValueError("need num_drives >= 1 and frames_per_drive >= 3")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    cam2cam, velo2cam = calib_texts(width, height)
    drives, speeds, poses = [], [], {}
    t0 = time.time()
    jobs = []
    for d in range(num_drives):
        folder, centres, speed, _, _ = _drive_setup(seed, d, frames_per_drive)
        drives.append(folder)
        speeds.append(speed)
        poses[folder] = centres
        cam_file, velo_file = kitti_utils.calib_files(out_dir, folder)
        os.makedirs(os.path.dirname(cam_file), exist_ok=True)
        with open(cam_file, "w") as f:
            f.write(cam2cam)
        with open(velo_file, "w") as f:
            f.write(velo2cam)
        files = [kitti_utils.velodyne_path(out_dir, folder, 0)]
        for side in ("l", "r"):
            files += [kitti_utils.image_path(out_dir, folder, 0, side), true_depth_path(out_dir, folder, 0, side),
                      kitti_utils.gt_depth_path(out_dir, folder, 0, side)]
        for p in files:
            os.makedirs(os.path.dirname(p), exist_ok=True)
        jobs += [(out_dir, seed, d, frames_per_drive, i, width, height, ext) for i in range(frames_per_drive)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc="synthetic KITTI", unit="frame")
    if workers and workers > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(int(workers)) as pool:
            # contiguous chunks keep each worker on one drive (its scene is built once)
            chunk = max(1, min(16, len(jobs) // (4 * int(workers)) or 1))
            for _ in pool.imap_unordered(_frame_job, jobs, chunksize=chunk):
                if bar is not None:
                    bar.update(1)
    else:
        for job in jobs:
            _frame_job(job)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    _DRIVE_CACHE.clear()
    splits = _write_splits(out_dir, drives, frames_per_drive, seed)
    info = {
        "out_dir": out_dir, "width": width, "height": height, "ext": ext,
        "K": np.array([[FX_N * width, 0, CX_N * width], [0, FY_N * height, CY_N * height], [0, 0, 1.0]]),
        "baseline": BASELINE, "drives": drives,
        "train_drives": drives[:-1] if num_drives > 1 else drives,
        "test_drive": drives[-1], "speeds": speeds, "centres": poses, "frames_per_drive": frames_per_drive,
        "splits": splits, "seconds": time.time() - t0,
    }
    return info


def _write_splits(out_dir, drives, num_frames, seed):
    """Split lists: train/val from the training drives (frames with both neighbours, both
    sides, ~10% val), eigen (10-digit frames) / eigen_benchmark test lists from the last drive."""
    train_drives = drives[:-1] if len(drives) > 1 else drives
    test_drive = drives[-1]
    lines = [f"{folder} {i} {side}" for folder in train_drives
             for i in range(1, num_frames - 1) for side in ("l", "r")]
    rng = np.random.default_rng([seed, 12345])
    n_val = max(1, int(round(0.1 * len(lines))))
    val_idx = set(rng.choice(len(lines), n_val, replace=False).tolist())
    train = [ln for k, ln in enumerate(lines) if k not in val_idx]
    val = [ln for k, ln in enumerate(lines) if k in val_idx]
    paths = {}
    for name, files in (("synthetic", {"train_files.txt": train, "val_files.txt": val}),
                        ("eigen", {"test_files.txt": [f"{test_drive} {i:010d} l" for i in range(num_frames)]}),
                        ("eigen_benchmark", {"test_files.txt": [f"{test_drive} {i} l" for i in range(num_frames)]})):
        folder = os.path.join(out_dir, "splits", name)
        os.makedirs(folder, exist_ok=True)
        for fname, content in files.items():
            with open(os.path.join(folder, fname), "w") as f:
                f.write("\n".join(content) + "\n")
        paths[name] = folder
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (KITTI raw layout)")
    p.add_argument("--num_drives", type=int, default=3)
    p.add_argument("--frames_per_drive", type=int, default=60)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", action="store_true", help="write PNG images instead of JPEG (q 92)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes rendering frames (default min(2, CPUs); output does not depend on it)")
    args = p.parse_args(argv)
    if args.num_drives < 1 or args.frames_per_drive < 3 or args.width < 32 or args.height < 32:
        print("error: bad size (--num_drives >= 1, --frames_per_drive >= 3, --width/--height >= 32)",
              file=sys.stderr)
        return 2
    info = make_synthetic_kitti(args.out, args.num_drives, args.frames_per_drive, args.width,
                                args.height, args.seed, "png" if args.png else "jpg", progress=True,
                                workers=args.workers)
    print(f"wrote {len(info['drives'])} drives x {args.frames_per_drive} frames "
          f"({args.width}x{args.height}) to {args.out} in {info['seconds']:.1f}s; "
          f"splits in {os.path.join(args.out, 'splits')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
