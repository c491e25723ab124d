"""Benchmark of precompute_depth_hints.py: images/s and per-stage split.

Creates (or reuses) a synthetic KITTI drive at the native KITTI size 1242 x 375
(tools/make_synthetic_kitti.py), computes hints at --width x --height (default
1024 x 320) with 1 worker and with all workers, and prints images/s end to end
(worker start-up included) and in the steady state (after every worker delivered its
first pair), plus the per-image CPU time of each stage (load = decode + resize, SGBM,
fusion = warp + SSIM + argmin, save) summed over workers, i.e. in single-core
milliseconds, and the rate those CPU times give on otherwise idle cores. CPU time is far
less inflated than wall time when other jobs share the cores (not immune, though: on a
busy machine it still grows, from shared caches and memory bandwidth). The rate is also
given as a multiple of the published Depth Hints script's: timed in the same run with
``--published DIR`` (a checkout of nianticlabs/depth-hints, run by
bench/published_precompute.py, whose hints are then compared with ours pixel by pixel),
else the recorded PUBLISHED_RATE (measured on this 2-core machine at 1024 x 320). The SGBM yardstick printed at start and end (CPU ms of
one fixed SGBM run) tells how fast the machine was: the same host has been measured
about 2x slower at some times than at others, with nothing else running in this VM.
With --accuracy it also prints the accuracy tables of bench/hint_accuracy.py (every
single matcher and the fused hints against the synthetic true depth; the Middlebury
motorcycle pair beside the published script's figures) and how far the tiled fusion is
from the whole-image reference. Figures are printed, never asserted.

    python bench/precompute.py [--data data/bench_precompute_1242x375] [--frames 12]
        [--height 320 --width 1024] [--workers N] [--accuracy] [--published DIR]
"""
import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import hint_fusion as HF  # noqa: E402
import precompute_depth_hints as P  # noqa: E402
from bench import hint_accuracy as A  # noqa: E402
from runtime import quiet_paddle_notices  # noqa: E402

quiet_paddle_notices()
PUBLISHED_RATE = 0.37  # images/s of the published script on this 2-core machine, 1024 x 320


def cpu_model():
    """`lscpu` model name (or platform.processor())."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def sgbm_yardstick(repeats=5):
    """CPU ms of one OpenCV SGBM run (blockSize 3, numDisparities 160, the matchers'
    settings) on a fixed random 1024 x 320 RGB pair, one thread: a machine-speed yardstick
    for comparing figures taken at different times (the same OpenCV code runs in the
    published script and here, so it scales both alike)."""
    import time
    import cv2
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (320, 1024, 3), dtype=np.uint8)
    b = np.ascontiguousarray(np.roll(a, -10, axis=1))
    m = HF.make_matchers()[HF.MATCHERS.index((3, 160))]
    m.compute(a, b)
    t0 = time.process_time()
    for _ in range(repeats):
        m.compute(a, b)
    return 1000 * (time.process_time() - t0) / repeats


def ensure_data(path, frames):
    """Synthetic 1242x375 drive with ``frames`` frames (reused when present) + a file list."""
    from tools.make_synthetic_kitti import make_synthetic_kitti
    marker = os.path.join(path, f"bench_{frames}.txt")
    if not os.path.isfile(marker):
        info = make_synthetic_kitti(path, num_drives=1, frames_per_drive=frames, width=1242,
                                    height=375, seed=0)
        folder = info["drives"][0]
        with open(marker, "w") as f:
            f.write("".join(f"{folder} {i} l\n{folder} {i} r\n" for i in range(frames)))
    return marker


def steady_rate(summary):
    """Images/s after every worker has delivered its first pair."""
    log, k = summary["result_log"], summary["workers"]
    if len(log) <= k:
        return float("nan")
    t_start = log[k - 1][0]
    images = sum(n for _, n in log[k:])
    return images / max(log[-1][0] - t_start, 1e-9)


def naive_cpu_per_image(data, pairs, height, width):
    """CPU seconds per image of the straightforward method, for comparison: all 12 SGBM
    matchers, then the plain whole-image fusion of all 12 candidates
    (HintComputer.fuse_reference). Returns (sgbm_s, fuse_s)."""
    import time
    P.limit_threads(1)
    hc = HF.HintComputer(height, width)
    sgbm = fuse = 0.0
    for folder, frame in pairs:
        img = A.load_pair(data, folder, frame, width, height)
        t0 = time.process_time()
        cands = np.stack([HF.disparity_to_depth(m.compute(img["l"], img["r"]) / 16.0, hc.focal)
                          for m in hc.matchers])
        t1 = time.process_time()
        hc.fuse_reference(img["l"], img["r"], cands, "l")
        t2 = time.process_time()
        sgbm += t1 - t0
        fuse += t2 - t1
    return sgbm / len(pairs), fuse / len(pairs)


def bench_workers(data, files, height, width, workers, save_path=None):
    """Run the precompute into ``save_path`` (a temp folder when None); returns the summary."""
    with tempfile.TemporaryDirectory() as tmp:
        args = P.build_parser().parse_args([
            "--data_path", data, "--filenames", files, "--save_path", save_path or tmp,
            "--height", str(height), "--width", str(width), "--num_workers", str(workers),
            "--overwrite_saved_depths"])
        with open(os.devnull, "w") as null:
            return P.run(args, out=null, err=null)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.path.join(ROOT, "data", "bench_precompute_1242x375"))
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--accuracy", action="store_true", help="also print the accuracy table")
    p.add_argument("--accuracy_frames", type=int, default=6)
    p.add_argument("--published", metavar="DIR",
                   help="also time the published script from this checkout of nianticlabs/depth-hints "
                        "in the same window (bench/published_precompute.py) and compare its hints")
    p.add_argument("--naive", action="store_true",
                   help="also time the straightforward method (12 matchers, whole-image fusion)")
    args = p.parse_args(argv)
    files = ensure_data(args.data, args.frames)
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; load average "
          f"{os.getloadavg()[0]:.2f} at start; SGBM yardstick {sgbm_yardstick():.0f} CPU ms "
          f"(one b3/n160 matcher, 1024x320)")
    print(f"data: {args.frames} synthetic 1242x375 pairs ({2 * args.frames} images), "
          f"hints at {args.width}x{args.height}\n")
    print("| workers | images | wall s | images/s (end to end) | images/s (steady) | "
          + " | ".join(f"{s} CPU ms" for s in P.STAGES) + " | CPU ms / image | CPU-bound images/s |")
    print("|---|---|---|---|---|" + "---|" * (len(P.STAGES) + 2))
    ours_dir = tempfile.mkdtemp(prefix="bench_hints_")
    try:
        return _report(args, files, ours_dir)
    finally:
        shutil.rmtree(ours_dir, ignore_errors=True)


def _report(args, files, ours_dir):
    """The tables of :func:`main`; our hints (last run) and the published script's go to ``ours_dir``."""
    for w in sorted({1, args.workers}):
        s = bench_workers(args.data, files, args.height, args.width, w, save_path=ours_dir)
        n = max(s["written"], 1)
        cpu = {k: 1000 * s["cpu_times"][k] / n for k in P.STAGES}
        stages = " | ".join(f"{cpu[k]:.0f}" for k in P.STAGES)
        print(f"| {w} | {s['written']} | {s['seconds']:.1f} | {s['images_per_s']:.2f} | "
              f"{steady_rate(s):.2f} | {stages} | {sum(cpu.values()):.0f} | "
              f"{1000 * w / sum(cpu.values()):.2f} |", flush=True)
    total = sum(cpu.values())
    ref, ref_steady, ref_name = PUBLISHED_RATE, PUBLISHED_RATE, f"recorded {PUBLISHED_RATE} images/s"
    if args.published:
        from bench import published_precompute as PP
        try:
            r = PP.time_published(args.published, args.data, files, args.height, args.width,
                                  save_path=os.path.join(ours_dir, "published"))
        except PP.PublishedError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        ref, ref_steady = r["images_per_s"], r["steady"]
        ref_name = (f"{ref:.2f} images/s end to end and {ref_steady:.2f} steady, timed just now "
                    f"({r['images']} images, {r['seconds']:.1f} s)")
        c = PP.compare_hints(ours_dir, r["save_path"])
        print(f"\npublished script, same data, same window: {ref_name}; changes to run it here: "
              f"{'; '.join(r['changes'])}.\nits hints vs ours ({c['files']} images): "
              f"{100 * c['equal']:.3f} % of the pixels equal (rtol 1e-5), {100 * c['one_sided']:.3f} % "
              f"hinted by one only, largest relative difference where both hint {c['max_rel']:.1e}")
    print(f"\n{w} workers: {s['images_per_s'] / ref:.1f}x (end to end), "
          f"{steady_rate(s) / ref_steady:.1f}x (steady) and "
          f"{1000 * w / total / ref:.1f}x (CPU-bound vs end to end) the published script's "
          f"{ref_name}; CPU split: SGBM {100 * cpu['sgbm'] / total:.0f} %, "
          f"fusion {100 * cpu['fuse'] / total:.0f} %, load + save "
          f"{100 * (cpu['load'] + cpu['save']) / total:.0f} %")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}, SGBM yardstick "
          f"{sgbm_yardstick():.0f} CPU ms. Stage times are per image, summed "
          f"over workers; CPU ms is the workers' process CPU time (hardly inflated by other load); "
          f"CPU-bound images/s = workers / CPU "
          f"seconds per image, the rate on otherwise idle cores.")
    if args.naive:
        sg, fu = naive_cpu_per_image(args.data, P.read_pairs(files)[:3], args.height, args.width)
        print(f"\nstraightforward method, CPU per image (left base, 3 pairs): 12 SGBM "
              f"{1000 * sg:.0f} ms + whole-image fusion of 12 candidates {1000 * fu:.0f} ms = "
              f"{1000 * (sg + fu):.0f} ms")
    if args.accuracy:
        pairs = P.read_pairs(files)[:args.accuracy_frames]
        table = A.hint_accuracy(args.data, pairs, args.height, args.width)
        print(f"\naccuracy vs true depth, {len(pairs)} pairs (both sides), "
              f"{args.width}x{args.height}:\n")
        print(A.format_accuracy_table(table))
        with tempfile.TemporaryDirectory() as tmp:
            moto = A.motorcycle_accuracy(tmp, compare_excluded=True)
        print("\nMiddlebury 2014 motorcycle (skimage), left hint vs ground-truth disparity:\n")
        print(A.format_motorcycle_table(moto))
        hc = HF.HintComputer(args.height, args.width)
        img = A.load_pair(args.data, *pairs[0], args.width, args.height)
        cmp = A.tiled_vs_reference(hc, img["l"], img["r"])
        print("\ntiled fuse vs fuse_reference (whole image), pair 0: " + "; ".join(
            f"{s}: {100 * c['equal']:.2f} % equal hints, hinted pixels {100 * c['same_hinted']:.2f} "
            f"% same, |pe diff| <= {c['pe_diff']:.1e}, error gap <= {c['gap']:.1e}"
            for s, c in cmp.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
