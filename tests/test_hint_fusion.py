"""Unit tests of precompute_depth_hints.py and hint_fusion.py (Watson et al. 2019; docs/METHOD.md, section 5):
split-file reading, the skip check, tiling, disparity to depth, the "no match" rule on a
constructed pair (both bases, two cameras), and the light parent process."""
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import hint_fusion as HF  # noqa: E402
import precompute_depth_hints as P  # noqa: E402

H, W = 96, 320


def test_read_pairs_dedup_and_errors(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("d/x_sync 3 l\nd/x_sync 3 r\nd/x_sync 0000000004 l\nd/y_sync 3 r\n")
    assert P.read_pairs(str(f)) == [("d/x_sync", 3), ("d/x_sync", 4), ("d/y_sync", 3)]
    f.write_text("d/x_sync 3 l\nd/x_sync\n")
    with pytest.raises(P.ToolkitError, match="line 2"):
        P.read_pairs(str(f))


def test_hint_is_valid(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.ones((1, H, W), np.float32))
    assert P.hint_is_valid(str(good), H, W)
    assert not P.hint_is_valid(str(good), H, W + 32)
    data = good.read_bytes()
    (tmp_path / "trunc.npy").write_bytes(data[:-4])
    assert not P.hint_is_valid(str(tmp_path / "trunc.npy"), H, W)
    np.save(tmp_path / "f64.npy", np.ones((1, H, W), np.float64))
    assert not P.hint_is_valid(str(tmp_path / "f64.npy"), H, W)
    (tmp_path / "junk.npy").write_bytes(b"garbage")
    assert not P.hint_is_valid(str(tmp_path / "junk.npy"), H, W)
    assert not P.hint_is_valid(str(tmp_path / "missing.npy"), H, W)


def test_tiles_cover_with_halo():
    assert list(HF._tiles(10, 16)) == [(0, 10, 0, 10)]
    assert list(HF._tiles(20, 16)) == [(0, 16, 0, 18), (16, 20, 2, 20)]
    tiles = list(HF._tiles(320, 64))
    assert tiles[0] == (0, 64, 0, 66) and tiles[1] == (64, 128, 63, 129)
    assert tiles[-1] == (256, 320, 254, 320)
    for k0, k1, c0, c1 in tiles:
        assert c1 - c0 == 66 and c0 <= max(k0 - 1, 0) and c1 >= min(k1 + 1, 320)


def test_disparity_to_depth():
    d = HF.disparity_to_depth(np.array([[0.0, -1.0, 4.0, 16.0]]), 0.58 * 1024)
    np.testing.assert_allclose(d, [[0.0, 0.0, 0.58 * 1024 * 0.1 / 4, 0.58 * 1024 * 0.1 / 16]],
                               rtol=1e-6)


def _no_match_pair(side, h=40, w=150, d=6, seed=0):
    """A constructed pair for ``side``'s base: the other image is random texture whose
    top-row corner pixel (the one "no match" samples) has colour c, the base is the other
    image shifted by ``d`` px, except a patch of constant colour c that no match explains.
    Returns (base, other, patch slice)."""
    rng = np.random.default_rng(seed)
    other = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    c = np.array([40, 200, 90], np.uint8)
    other[0, 0 if side == "l" else w - 1] = c
    base = np.empty_like(other)
    if side == "l":  # left pixel x sees right pixel x - d
        base[:, d:] = other[:, :-d]
        base[:, :d] = other[:, :1]
    else:  # right pixel x sees left pixel x + d
        base[:, :-d] = other[:, d:]
        base[:, -d:] = other[:, -1:]
    patch = (slice(10, 30), slice(50, 90))  # spans a column-tile border (64)
    base[patch] = c
    return base, other, patch


CUSTOM_K = np.array([[0.7, 0, 0.45, 0], [0, 1.5, 0.52, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)


@pytest.mark.parametrize("K", [None, CUSTOM_K], ids=["kitti_K", "custom_K"])
@pytest.mark.parametrize("side", ["l", "r"])
def test_no_match_competes_and_wins_where_it_explains_best(side, K):
    """Both bases: a candidate that is invalid on a patch that only "no match" explains
    (the base shows the other image's top-row corner colour there) wins on the patch, so
    the hint is 0 there; elsewhere the right disparity wins. Excluding invalid candidates
    would have put some (wrong) depth on the patch. Also with other camera intrinsics
    (their fx converts disparity to depth)."""
    h, w, d = 40, 150, 6
    base, other, patch = _no_match_pair(side, h, w, d)
    hc = HF.HintComputer(h, w, K=K)
    assert hc.focal == pytest.approx((0.58 if K is None else 0.7) * w)
    depth = np.float32(hc.focal * 0.1 / d)
    good = np.full((h, w), depth, np.float32)
    holed = good.copy()
    holed[patch] = 0.0
    wrong = np.full((h, w), np.float32(hc.focal * 0.1 / (d + 5)), np.float32)
    cands = np.stack([good, holed, wrong])
    inner = (slice(patch[0].start + 1, patch[0].stop - 1),
             slice(patch[1].start + 1, patch[1].stop - 1))
    edge = d + 2  # columns whose match falls outside the other image
    keep = (slice(None), slice(edge, None) if side == "l" else slice(0, w - edge))
    for fuse in (hc.fuse, hc.fuse_reference):
        hint, pe = fuse(base, other, cands, side)
        assert np.all(hint[inner] == 0)
        assert pe[1][inner].max() < 1e-6 < pe[0][inner].min()
        outside = np.ones((h, w), bool)
        outside[patch[0].start - 1:patch[0].stop + 1, patch[1].start - 1:patch[1].stop + 1] = False
        assert np.all(hint[keep][outside[keep]] == depth)
        excluded = HF.select(cands, pe + 1000.0 * (cands <= 0))  # the old, wrong rule
        assert np.all(excluded[inner] > 0)


def test_missing_default_split_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(P, "REPO_ROOT", str(tmp_path))
    rc = P.main(["--data_path", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "eigen_full" in err[0] and "--filenames" in err[0]
    rc = P.main(["--data_path", str(tmp_path / "nope"), "--filenames", "x.txt"])
    assert rc == 2 and "--data_path" in capsys.readouterr().err


def test_parent_process_does_not_import_paddle():
    """Only the workers import Paddle (the parent of a spawn pool stays light)."""
    code = ("import sys; import precompute_depth_hints as P; P.build_parser(); "
            "P.plan([('d/x_sync', 1)], '/nonexistent', 96, 320, False); "
            "print('paddle' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
