"""precompute_depth_hints.py --shard K/N: N runs (machines, a job array) split one data set.

Shard K takes the split's unique pairs K, K+N, K+2N, ... (1-based, in the order of their first
line): the shards are disjoint and cover the split, so together they write exactly the files
of one unsharded run, byte for byte, and no two write the same file; each resumes and logs on
its own (precompute_shard_K_of_N.log, every line naming the shard)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import precompute_depth_hints as P  # noqa: E402

SCRIPT = os.path.join(ROOT, "precompute_depth_hints.py")
H, W = 32, 192  # tiny, above the SGBM matchers' least width (162)


def _cmd(data, files, save, *extra):
    return [sys.executable, SCRIPT, "--data_path", data, "--filenames", files, "--save_path", save,
            "--height", str(H), "--width", str(W), "--num_workers", "1", *extra]


def _run(*args):
    return subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=600, cwd=ROOT)


def _outputs(save):
    """{relative path: bytes} of every .npy under ``save``."""
    found = {}
    for root, _, names in os.walk(save):
        for name in names:
            path = os.path.join(root, name)
            if name.endswith(".npy"):
                with open(path, "rb") as f:
                    found[os.path.relpath(path, save)] = f.read()
    return found


def _log(path):
    with open(path) as f:
        return [line.split(" ", 2)[2] for line in f.read().splitlines()]


@pytest.fixture(scope="module")
def split(synthetic_kitti, tmp_path_factory):
    """7 pairs of the two drives (an odd count, so the shards differ in size); two pairs are
    listed twice (their l and r lines), as the split files of the data sets do."""
    import glob
    drives = sorted(os.path.relpath(os.path.dirname(p), synthetic_kitti)
                    for p in glob.glob(os.path.join(synthetic_kitti, "*", "*_sync", "image_02")))
    pairs = [(d, f) for d in drives for f in range(1, 5)][:7]
    lines = []
    for i, (d, f) in enumerate(pairs):
        lines.append(f"{d} {f} l")
        if i in (1, 4):
            lines.append(f"{d} {f} r")
    path = tmp_path_factory.mktemp("shard_split") / "files.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path), pairs


def test_shards_are_disjoint_and_cover_the_split():
    pairs = [("d", i) for i in range(11)]
    for n in (1, 2, 3, 4, 11, 15):
        shards = [P.shard_pairs(pairs, (k, n)) for k in range(1, n + 1)]
        assert sorted(p for s in shards for p in s) == sorted(pairs)
        assert sum(len(s) for s in shards) == len(pairs)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert P.shard_pairs(pairs, (2, 4)) == [("d", 1), ("d", 5), ("d", 9)]
    assert P.shard_pairs(pairs, None) == pairs
    assert P.parse_shard("3/8") == (3, 8) and P.parse_shard(None) is None


@pytest.mark.parametrize("value", ["0/4", "5/4", "x", "1/0", "4", "1/4/2", "a/b", "2/-3", ""])
def test_bad_shard_is_one_line(value, tmp_path, rel_kit):
    files = tmp_path / "files.txt"
    files.write_text("2011_09_26/2011_09_26_drive_0001_sync 1 l\n")
    r = _run(str(tmp_path), str(files), str(tmp_path / "hints"), "--shard", value)
    rel_kit.assert_one_line_error(r, "--shard %s" % value, "1 <= K <= N")
    assert not (tmp_path / "hints").exists()


@pytest.mark.slow
def test_union_of_shards_is_the_unsharded_run(synthetic_kitti, split, tmp_path):
    files, pairs = split
    r = _run(synthetic_kitti, files, str(tmp_path / "whole"))
    assert r.returncode == 0, r.stderr
    whole = _outputs(str(tmp_path / "whole"))
    assert len(whole) == 2 * len(pairs)
    # the 3 shards at once into one folder, as a job array does
    save = str(tmp_path / "sharded")
    procs = [subprocess.Popen(_cmd(synthetic_kitti, files, save, "--shard", "%d/3" % k), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for k in (1, 2, 3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    got = _outputs(save)
    assert got == whole  # the same files, byte for byte
    written = []
    for k, (stdout, _) in zip((1, 2, 3), outs):
        n = 2 * len(P.shard_pairs(pairs, (k, 3)))
        assert "shard %d/3: done: %d hints written, 0 already present, 0 failed" % (k, n) in stdout
        written.append(n)
        log = _log(os.path.join(save, "precompute_shard_%d_of_3.log" % k))
        assert log and all(line.startswith("shard %d/3: " % k) for line in log), log
    assert sum(written) == len(whole)  # every hint written once: no two shards wrote one file
    assert not os.path.exists(os.path.join(save, P.LOG_FILE))
    # each shard resumes on its own: shard 2 redoes the one hint removed from it, shard 3 has nothing to do
    mine = P.shard_pairs(pairs, (2, 3))[0]
    os.remove(P.hint_path(save, *mine, "r"))
    r = _run(synthetic_kitti, files, save, "--shard", "2/3")
    assert r.returncode == 0, r.stderr
    n = 2 * len(P.shard_pairs(pairs, (2, 3)))
    assert "shard 2/3: done: 1 hints written, %d already present" % (n - 1) in r.stdout
    assert _outputs(save) == whole
    r = _run(synthetic_kitti, files, save, "--shard", "3/3")
    assert r.returncode == 0 and "shard 3/3: nothing to do: all" in r.stdout, r.stderr
    assert _log(os.path.join(save, "precompute_shard_3_of_3.log"))[-1].startswith("shard 3/3: nothing to do")
    # more shards than pairs: the empty ones have nothing to do and exit 0
    r = _run(synthetic_kitti, files, str(tmp_path / "many"), "--shard", "9/9")
    assert r.returncode == 0 and "shard 9/9: nothing to do: none of the 7 pairs" in r.stdout, r.stderr
