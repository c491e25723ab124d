"""Shared pytest fixtures.

`synthetic_kitti` builds one small synthetic KITTI-layout data set per test session
(tools/make_synthetic_kitti.py) that every end-to-end test reads.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SHARED_SPLITS = os.path.join(os.path.dirname(ROOT), "shared", "kitti_splits")


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


@pytest.fixture(scope="session")
def kitti_splits_dir():
    if not os.path.isdir(SHARED_SPLITS):
        pytest.skip("../shared/kitti_splits not present")
    return SHARED_SPLITS


@pytest.fixture(scope="session")
def synthetic_kitti(tmp_path_factory):
    """A small synthetic KITTI raw tree (320x96 images, LiDAR, calib, splits)."""
    from tools.make_synthetic_kitti import make_synthetic_kitti
    out = str(tmp_path_factory.mktemp("synthetic_kitti"))
    make_synthetic_kitti(out, num_drives=2, frames_per_drive=8, width=320, height=96, seed=0)
    return out
