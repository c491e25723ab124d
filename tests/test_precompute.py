"""End-to-end tests of precompute_depth_hints.py (Watson et al. 2019; docs/METHOD.md,
section 5) on the synthetic KITTI fixture (unit tests: test_hint_fusion.py).

Hints are computed at the fixture's own size (320 x 96) so that every run takes seconds.
Numbers asserted here were measured on the fixture (seed 0) and given a margin: a1 of the
fused hints 0.91-0.94 per image (bounds: 0.5 per image, 0.75 on average), median hint/true
ratio 1.00-1.01 (bound 0.95-1.08), coverage 0.78-0.80 (bound 0.5), the selected
photometric error 0.028-0.033 with the right baseline sign vs 0.22-0.25 with the wrong one
(bounds: < 0.06 and > 3x), a1 0.10-0.19 when the two images are swapped (bound 0.3); on
drive 1 the fused hints' abs_rel on the pixels all matchers cover is 0.076 vs 0.084 for
the mean single matcher, at 0.77 vs 0.62 coverage. The tiled fusion equals the whole-image
reference on 99.93-99.96 % of the pixels (the rest are float-rounding ties: |pe
difference| <= 7e-5, error gap <= 3e-5), with the same hinted pixels.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import hint_fusion as HF  # noqa: E402
import precompute_depth_hints as P  # noqa: E402
from bench import hint_accuracy as A  # noqa: E402
from camera import STEREO_SCALE_FACTOR  # noqa: E402
from layers import MAX_DEPTH, MIN_DEPTH  # noqa: E402

pytestmark = pytest.mark.slow  # CLI runs on the synthetic data; the unit tests: test_hint_fusion.py

H, W = 96, 320
SCRIPT = os.path.join(ROOT, "precompute_depth_hints.py")


def _drives(data):
    import glob
    return sorted(os.path.relpath(os.path.dirname(p), data)
                  for p in glob.glob(os.path.join(data, "*", "*_sync", "image_02")))


def _pairs(data, per_drive):
    """``per_drive`` frames (1, 2, ...) of every drive of the fixture."""
    return [(d, f) for d in _drives(data) for f in range(1, 1 + per_drive)]


def _write_list(path, pairs, both_sides=True):
    lines = []
    for folder, frame in pairs:
        lines.append(f"{folder} {frame} l")
        if both_sides:
            lines.append(f"{folder} {frame} r")  # the same pair twice: must be deduplicated
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _cmd(data, filenames, save, workers=1, extra=()):
    return [sys.executable, SCRIPT, "--data_path", data, "--filenames", filenames,
            "--save_path", save, "--height", str(H), "--width", str(W),
            "--num_workers", str(workers), *extra]


def _cli(data, filenames, save, workers=1, extra=()):
    return subprocess.run(_cmd(data, filenames, save, workers, extra), capture_output=True,
                          text=True, timeout=600)


def _outputs(save):
    """Every file under ``save`` but the run log."""
    found = {}
    for root, _, files in os.walk(save):
        for name in files:
            found[os.path.relpath(os.path.join(root, name), save)] = os.path.join(root, name)
    found.pop(P.LOG_FILE, None)
    return found


def _log(save):
    """precompute.log without its time stamps."""
    with open(os.path.join(save, P.LOG_FILE)) as f:
        return [line.split(" ", 2)[2] for line in f.read().splitlines()]


def _true_depth(data, folder, frame, side):
    return A.read_true_depth(data, folder, frame, side, W, H)


def _hint(hc, left, right, side):
    """Fused hint of ``side`` for a resized pair, as the CLI computes it."""
    base, other = (left, right) if side == "l" else (right, left)
    return hc.fuse(base, other, hc.candidates(left, right, side), side, return_pe=False)[0]


def _a1(hint, gt):
    m = (hint > 0) & (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
    p = np.clip(hint[m] * STEREO_SCALE_FACTOR, MIN_DEPTH, MAX_DEPTH)
    r = np.maximum(p / gt[m], gt[m] / p)
    return float(np.mean(r < 1.25)), float(np.median(p / gt[m]))


@pytest.fixture(scope="module")
def reference(synthetic_kitti, tmp_path_factory):
    """One uninterrupted single-worker CLI run over 3 pairs of each drive."""
    tmp = tmp_path_factory.mktemp("hints_ref")
    pairs = _pairs(synthetic_kitti, 3)
    files = _write_list(str(tmp / "files.txt"), pairs)
    save = str(tmp / "hints")
    proc = _cli(synthetic_kitti, files, save)
    assert proc.returncode == 0, proc.stderr
    return {"data": synthetic_kitti, "pairs": pairs, "files": files, "save": save,
            "stdout": proc.stdout}


@pytest.fixture(scope="module")
def computer():
    return HF.HintComputer(H, W)


def test_blocksize_2_equals_3(reference):
    """HintComputer runs blockSize 2 once for 2 and 3: OpenCV must give identical output."""
    data = reference["data"]
    folder, frame = reference["pairs"][0]
    img = list(A.load_pair(data, folder, frame, W, H).values())
    by_key = dict(zip(HF.MATCHERS, HF.make_matchers()))
    for n in HF.NUM_DISPARITIES:
        a = by_key[(2, n)].compute(img[0], img[1])
        b = by_key[(3, n)].compute(img[0], img[1])
        assert np.array_equal(a, b)
    assert not np.array_equal(by_key[(1, 64)].compute(img[0], img[1]),
                              by_key[(3, 64)].compute(img[0], img[1]))


def test_cli_hints_both_sides(reference):
    """Every pair gets a (1,H,W) float32 hint per side, accurate against the true depth."""
    data, save = reference["data"], reference["save"]
    assert f"{2 * len(reference['pairs'])} hints written" in reference["stdout"]
    outs = _outputs(save)
    assert len(outs) == 2 * len(reference["pairs"])
    a1s = []
    for folder, frame in reference["pairs"]:
        hints = {}
        for side in ("l", "r"):
            path = P.hint_path(save, folder, frame, side)
            h = np.load(path)
            assert h.shape == (1, H, W) and h.dtype == np.float32
            assert np.all(h >= 0) and np.all(np.isfinite(h))
            assert np.mean(h > 0) > 0.5
            a1, med = _a1(h[0], _true_depth(data, folder, frame, side))
            assert a1 > 0.5, (folder, frame, side, a1)
            assert 0.95 < med < 1.08, (folder, frame, side, med)
            a1s.append(a1)
            hints[side] = h
        assert not np.array_equal(hints["l"], hints["r"])
    assert np.mean(a1s) > 0.75


def test_fused_beats_mean_single_matcher(reference, computer):
    table = A.hint_accuracy(reference["data"], reference["pairs"][:2], H, W, hc=computer)
    fused, mean = table["fused"], table["mean_single"]
    assert fused["abs_rel_common"] < mean["abs_rel_common"]
    assert fused["a1_common"] > mean["a1_common"] - 0.005
    assert fused["coverage"] > max(t["coverage"] for k, t in table.items() if k.startswith("b"))
    assert fused["a1"] > 0.75
    # the same fusion run through the CLI gives the same hints
    folder, frame = reference["pairs"][0]
    img = A.load_pair(reference["data"], folder, frame, W, H)
    for side in ("l", "r"):
        saved = np.load(P.hint_path(reference["save"], folder, frame, side))[0]
        assert np.array_equal(_hint(computer, img["l"], img["r"], side), saved)


def test_tiled_fusion_matches_whole_image_pass(reference, computer):
    """The tiled, deduplicated fusion (fuse) gives the plain whole-image pass's errors
    (fuse_reference) to float rounding, for every candidate including "no match", and so
    the same choice except at float-rounding ties (measured on this pair: 0.04-0.07 % of
    the pixels differ, |pe difference| <= 6e-5, error gap of the tiled choice <= 2e-5,
    hinted pixels identical)."""
    img = A.load_pair(reference["data"], *reference["pairs"][4], W, H)
    for side in ("l", "r"):
        base, other = (img["l"], img["r"]) if side == "l" else (img["r"], img["l"])
        cands = computer.candidates(img["l"], img["r"], side)
        assert (cands == 0).any(axis=(1, 2)).all()  # every candidate has "no match" pixels
        hint, pe = computer.fuse(base, other, cands, side)
        ref_hint, ref_pe = computer.fuse_reference(base, other, cands, side)
        assert np.abs(pe - ref_pe).max() < 1e-3
        assert np.mean(hint == ref_hint) > 0.99
        assert np.mean((hint > 0) == (ref_hint > 0)) > 0.999
        chosen = np.argmin(pe, 0)
        gap = np.take_along_axis(ref_pe, chosen[None], 0)[0] - ref_pe.min(0)
        assert gap.max() < 1e-3


def test_baseline_sign_and_swapped_images(reference, computer):
    """The baseline sign (-0.1 for a left base, +0.1 for a right base) matters, and feeding
    the pair the wrong way round ruins the hints, for both sides."""
    data = reference["data"]
    folder, frame = reference["pairs"][1]
    img = A.load_pair(data, folder, frame, W, H)
    for side, sign in (("l", -1), ("r", 1)):
        gt = _true_depth(data, folder, frame, side)
        base, other = (img["l"], img["r"]) if side == "l" else (img["r"], img["l"])
        cands = computer.candidates(img["l"], img["r"], side)
        hint, pe = computer.fuse(base, other, cands, side)
        hint_default, _ = computer.fuse(base, other, cands, side, baseline_sign=sign)
        assert np.array_equal(hint, hint_default)
        wrong, pe_wrong = computer.fuse(base, other, cands, side, baseline_sign=-sign)
        valid = hint > 0
        right_err = pe.min(0)[valid].mean()
        wrong_err = pe_wrong.min(0)[valid].mean()
        assert right_err < 0.06 and wrong_err > 3 * right_err, (side, right_err, wrong_err)
        assert not np.array_equal(wrong, hint)
        swapped = _hint(computer, img["r"], img["l"], side)  # left and right exchanged
        assert _a1(swapped, gt)[0] < 0.3 < 0.75 < _a1(hint, gt)[0]


def _run_and_kill(cmd, save, after, timeout=300):
    """Start ``cmd`` and SIGKILL it as soon as ``after`` complete hints exist in ``save``
    (as an OOM kill or a lost job would). Returns the return code."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if len([k for k in _outputs(save) if k.endswith(".npy")]) >= after:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_resume_bit_identical(reference, tmp_path):
    """A run killed after 4 or more hints leaves only complete .npy files (at most a
    hidden temp file beside them); the re-run finishes the rest and every output equals
    the uninterrupted run's, byte for byte. A truncated hint is recomputed, and a third
    run has nothing to do."""
    data, files = reference["data"], reference["files"]
    total = 2 * len(reference["pairs"])
    save = str(tmp_path / "hints")
    rc = _run_and_kill(_cmd(data, files, save), save, after=4)
    assert rc == -signal.SIGKILL
    found = _outputs(save)
    partial = {k: v for k, v in found.items() if k.endswith(".npy")}
    assert 4 <= len(partial) < total
    assert all(os.path.basename(k).startswith(".") and k.endswith(".tmp")
               for k in set(found) - set(partial))
    assert all(P.hint_is_valid(p, H, W) for p in partial.values())
    # a truncated hint (as a non-atomic writer would leave it) must be recomputed
    victim = sorted(partial.values())[0]
    with open(victim, "r+b") as f:
        f.truncate(100)
    proc = _cli(data, files, save)
    assert proc.returncode == 0, proc.stderr
    done = len(partial) - 1
    assert f"{total - done} hints written, {done} already present" in proc.stdout
    ref = _outputs(reference["save"])
    got = {k: v for k, v in _outputs(save).items() if k.endswith(".npy")}
    assert sorted(ref) == sorted(got)
    for key in ref:
        with open(ref[key], "rb") as a, open(got[key], "rb") as b:
            assert a.read() == b.read(), key
    proc = _cli(data, files, save)
    assert proc.returncode == 0 and "nothing to do" in proc.stdout
    # the killed run and the resumed one append to one log: two starts, one summary; the
    # third run, with nothing to do, logs its summary line too
    log = _log(save)
    starts = [ln for ln in log if ln.startswith("computing ")]
    assert len(starts) == 2 and f"computing {total - done} hints" in starts[1]
    assert f"{done} already done)" in starts[1]
    assert log[-1] == proc.stdout.strip() and log[-1].startswith(f"nothing to do: all {total} hints")
    assert log[-2].startswith(f"done: {total - done} hints written, {done} already present")
    assert log[-3].startswith(f"hints {total - done}/{total - done} img (100.0 %) | ")


def test_two_workers_match_one(reference, tmp_path):
    """The spawn pool gives the same bytes as the in-process single worker."""
    pairs = reference["pairs"][:3]
    files = _write_list(str(tmp_path / "files.txt"), pairs, both_sides=False)
    save = str(tmp_path / "hints")
    proc = _cli(reference["data"], files, save, workers=2)
    assert proc.returncode == 0, proc.stderr
    assert "with 2 worker(s)" in proc.stdout
    got = _outputs(save)
    assert len(got) == 2 * len(pairs)
    ref = _outputs(reference["save"])
    for key, path in got.items():
        with open(ref[key], "rb") as a, open(path, "rb") as b:
            assert a.read() == b.read(), key


def test_bad_inputs_reported_and_skipped(reference, tmp_path):
    """A corrupt jpg and a missing image are reported with their path (one line each),
    the other pairs are written, and the exit code is 1."""
    src = reference["data"]
    data = tmp_path / "data"
    pairs = reference["pairs"][:4]
    for folder, frame in pairs:
        for side in ("l", "r"):
            s = P.image_path(src, folder, frame, side, ".jpg")
            d = P.image_path(str(data), folder, frame, side, ".jpg")
            os.makedirs(os.path.dirname(d), exist_ok=True)
            shutil.copyfile(s, d)
    corrupt = P.image_path(str(data), *pairs[0], "l", ".jpg")
    with open(corrupt, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    missing = P.image_path(str(data), *pairs[2], "r", ".jpg")
    os.remove(missing)
    files = _write_list(str(tmp_path / "files.txt"), pairs)
    save = str(tmp_path / "hints")
    proc = _cli(str(data), files, save)
    assert proc.returncode == 1
    err_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 2, proc.stderr
    assert any(corrupt in ln and "cannot decode" in ln for ln in err_lines)
    assert any(missing in ln and "file not found" in ln for ln in err_lines)
    assert "4 hints written, 0 already present, 4 failed (2 bad file(s))" in proc.stdout
    log = _log(save)  # the errors and the summary are in the run's log too
    assert log[0].startswith("computing 8 hints (4 pairs, 0 already done)")
    assert [ln for ln in log if ln.startswith("error:")] == err_lines
    assert re.fullmatch(r"hints 8/8 img \(100\.0 %\) \| [0-9.]+ img/s \| elapsed \S+ \| ETA 0s", log[-2])
    assert log[-1].startswith("done: 4 hints written, 0 already present, 4 failed (2 bad file(s))")
    got = _outputs(save)
    expected = {os.path.relpath(P.hint_path(save, f, i, s), save)
                for f, i in (pairs[1], pairs[3]) for s in ("l", "r")}
    assert set(got) == expected


def test_png_input_and_overwrite(tmp_path):
    """--png reads PNG images; --overwrite_saved_depths recomputes existing hints."""
    from tools.make_synthetic_kitti import make_synthetic_kitti
    info = make_synthetic_kitti(str(tmp_path / "png"), num_drives=1, frames_per_drive=3,
                                width=W, height=H, seed=1, ext="png")
    files = _write_list(str(tmp_path / "files.txt"), [(info["drives"][0], 1)])
    save = str(tmp_path / "hints")
    proc = _cli(info["out_dir"], files, save, extra=("--png",))
    assert proc.returncode == 0, proc.stderr
    assert "2 hints written" in proc.stdout
    path = P.hint_path(save, info["drives"][0], 1, "r")
    first = np.load(path)
    np.save(path, np.zeros((1, H, W), np.float32))  # valid file, wrong content
    proc = _cli(info["out_dir"], files, save, extra=("--png",))
    assert "nothing to do" in proc.stdout
    proc = _cli(info["out_dir"], files, save, extra=("--png", "--overwrite_saved_depths"))
    assert "2 hints written, 0 already present" in proc.stdout
    assert np.array_equal(np.load(path), first)
    proc = _cli(info["out_dir"], files, str(tmp_path / "h2"))  # no .jpg at all: clear error
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "--png" in err[-1] and "no input images" in err[-1]
