"""precompute_depth_hints.py's one-line errors before and during a run: a size the SGBM
matchers cannot take, a split file that is not UTF-8, an output folder that fills up (a real
1 MiB tmpfs when this machine lets the test mount one, and a writer made to raise ENOSPC);
and the summary line in precompute.log of a run with nothing to do."""
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import hint_fusion as HF  # noqa: E402
import precompute_depth_hints as P  # noqa: E402

SCRIPT = os.path.join(ROOT, "precompute_depth_hints.py")
PAIR = ("2011_09_26/2011_09_26_drive_0001_sync", 1)


def _args(data, files, save, h, w, *extra):
    return ["--data_path", data, "--filenames", str(files), "--save_path", str(save), "--height", str(h),
            "--width", str(w), "--num_workers", "1", *extra]


def _run(*args, prefix=()):
    return subprocess.run([sys.executable, *prefix, *args], capture_output=True, text=True, timeout=600, cwd=ROOT)


def _split(path, pairs):
    path.write_text("".join("%s %d l\n" % p for p in pairs))
    return path


def _log(save):
    with open(os.path.join(save, P.LOG_FILE)) as f:
        return [line.split(" ", 2)[2] for line in f.read().splitlines()]


def _drive_pairs(data, frames):
    import glob
    drives = sorted(os.path.relpath(os.path.dirname(p), data)
                    for p in glob.glob(os.path.join(data, "*", "*_sync", "image_02")))
    return [(d, f) for d in drives for f in frames]


def test_min_width_is_opencv_sgbm_bound():
    """162 = 160 disparities + blockSize 3 // 2 + 1: OpenCV's SGBM needs width - numDisparities > blockSize // 2."""
    import cv2
    assert HF.MIN_WIDTH == 162
    img = np.random.default_rng(0).integers(0, 256, (32, HF.MIN_WIDTH, 3), dtype=np.uint8)
    for m in HF.make_matchers():
        m.compute(img, img)
    with pytest.raises(cv2.error):
        HF.make_matchers()[-1].compute(img[:, 1:], img[:, 1:])  # block size 3, 160 disparities


@pytest.mark.parametrize("h,w,words", [(320, 161, ["--width 161", "162"]), (320, 160, ["--width 160", "162"]),
                                       (31, 1024, ["--height 31", "32"])])
def test_too_small_size_is_one_line(synthetic_kitti, tmp_path, rel_kit, h, w, words):
    r = _run(SCRIPT, *_args(synthetic_kitti, _split(tmp_path / "f.txt", [PAIR]), tmp_path / "hints", h, w))
    rel_kit.assert_one_line_error(r, *words)
    assert not (tmp_path / "hints").exists()


def test_split_file_not_utf8_is_one_line(synthetic_kitti, tmp_path, rel_kit):
    files = tmp_path / "latin1.txt"
    files.write_bytes(("%s %d l\n" % PAIR).encode() + "2011_09_26/caf\xe9 2 l\n".encode("latin-1"))
    r = _run(SCRIPT, *_args(synthetic_kitti, files, tmp_path / "hints", 96, 320))
    rel_kit.assert_one_line_error(r, "not UTF-8", str(files))
    assert not (tmp_path / "hints").exists()


@pytest.mark.slow
def test_least_width_runs_and_nothing_to_do_is_logged(synthetic_kitti, tmp_path):
    files, save = _split(tmp_path / "f.txt", [PAIR]), tmp_path / "hints"
    r = _run(SCRIPT, *_args(synthetic_kitti, files, save, 32, HF.MIN_WIDTH))
    assert r.returncode == 0 and "error" not in r.stderr, r.stderr
    assert np.load(P.hint_path(str(save), *PAIR, "l")).shape == (1, 32, HF.MIN_WIDTH)
    r = _run(SCRIPT, *_args(synthetic_kitti, files, save, 32, HF.MIN_WIDTH))
    assert r.returncode == 0 and "nothing to do: all 2 hints of 1 pairs" in r.stdout, r.stderr
    log = _log(str(save))
    assert log[-2].startswith("done: 2 hints written")
    assert log[-1] == r.stdout.strip()  # the summary of the run with nothing to do


def _check_disk_full(r, save, written, rel_kit, reference=None):
    """One line naming the folder, exit 2; the hints written are complete, no temp file left."""
    line = rel_kit.assert_one_line_error(r, "cannot write hints in the output folder", "--save_path %s" % save,
                                         "free space there")
    assert "no space left on device" in line.lower()
    assert "the hints written so far are kept" in line
    found = [os.path.join(root, n) for root, _, names in os.walk(save) for n in names if n != P.LOG_FILE]
    assert all(n.endswith(".npy") for n in found), found
    assert len(found) == written, (found, line)
    h, w = reference
    assert all(P.hint_is_valid(p, h, w) for p in found)
    return found


# the writer raises ENOSPC from its third hint on (a disk that fills up during the run)
PATCHED = """
import errno, runpy, sys
sys.path.insert(0, {root!r})
import precompute_depth_hints as P
calls = []
def full(path, array):
    calls.append(path)
    if len(calls) > 2:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(path, array)
real, P.atomic_save_npy = P.atomic_save_npy, full
sys.exit(P.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_full_disk_while_writing_is_one_line_patched_writer(synthetic_kitti, tmp_path, rel_kit):
    pairs = _drive_pairs(synthetic_kitti, (1, 2, 3))
    files, save = _split(tmp_path / "f.txt", pairs), str(tmp_path / "hints")
    r = _run("-c", PATCHED.format(root=ROOT), *_args(synthetic_kitti, files, save, 32, 192))
    _check_disk_full(r, save, 2, rel_kit, (32, 192))
    log = _log(save)
    assert log[-1].startswith("error: cannot write hints in the output folder") and "done:" not in log[-1]
    r = _run(SCRIPT, *_args(synthetic_kitti, files, save, 32, 192))  # space again: the rest is done
    assert r.returncode == 0 and "%d hints written, 2 already present" % (2 * len(pairs) - 2) in r.stdout, r.stderr


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (skip when this machine does not let the test mount one)."""
    folder = tmp_path / ("tmpfs_" + uuid.uuid4().hex[:8])
    folder.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s); the patched-writer test covers it" % r.stderr.strip())
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_full_disk_while_writing_is_one_line_real_tmpfs(synthetic_kitti, small_tmpfs, tmp_path, rel_kit, workers):
    """At 320x96 a hint takes 123 kB: 1 MiB holds 8 of the 18; the run stops at the first that does
    not fit (a pool stops its other worker), and a rerun with room finishes the rest."""
    pairs = _drive_pairs(synthetic_kitti, (1, 2, 3, 4, 5))[:9]
    files, save = _split(tmp_path / "f.txt", pairs), str(small_tmpfs)
    args = _args(synthetic_kitti, files, save, 96, 320)
    args[args.index("--num_workers") + 1] = workers
    r = _run(SCRIPT, *args)
    found = len(_check_disk_full(r, save, 8, rel_kit, (96, 320)))
    subprocess.run(["mount", "-o", "remount,size=4m", save], check=True)
    r = _run(SCRIPT, *args)
    assert r.returncode == 0, r.stderr
    assert "%d hints written, %d already present" % (18 - found, found) in r.stdout
