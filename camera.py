"""The camera model of the method (docs/METHOD.md, section 1): normalised intrinsics and
the stereo baseline. No Paddle import, so light processes (the hint precompute's parent,
file checks) can use it.

Intrinsics are *normalised* as in Monodepth2: row 0 of K is divided by the image width
and row 1 by the height, so one K serves every resolution; :func:`scale_intrinsics` turns
it into pixel units for a given size.
"""
import numpy as np

__all__ = ["KITTI_K", "NETWORK_BASELINE", "KITTI_BASELINE_M", "STEREO_SCALE_FACTOR",
           "scale_intrinsics", "stereo_scale_factor"]

# KITTI's normalised intrinsics (Godard et al. 2019): fx = 0.58 W, fy = 1.92 H, principal
# point at the image centre.
KITTI_K = np.array([[0.58, 0, 0.5, 0],
                    [0, 1.92, 0.5, 0],
                    [0, 0, 1, 0],
                    [0, 0, 0, 1]], dtype=np.float32)

NETWORK_BASELINE = 0.1   # stereo baseline in the network's units (stereo_T[0, 3] = +-0.1)
KITTI_BASELINE_M = 0.54  # KITTI's real stereo baseline in metres
STEREO_SCALE_FACTOR = 5.4  # KITTI_BASELINE_M / NETWORK_BASELINE: network depth -> metres


def stereo_scale_factor(baseline_m=KITTI_BASELINE_M):
    """Factor from the network's depth to metres for a rig with ``baseline_m`` metres."""
    return float(baseline_m) / NETWORK_BASELINE


def scale_intrinsics(K, width, height, dtype=np.float64):
    """Normalised 4x4 ``K`` -> pixel intrinsics for a ``width`` x ``height`` image
    (row 0 times width, row 1 times height)."""
    K = np.array(K, dtype=dtype)
    K[0, :] *= width
    K[1, :] *= height
    return K
