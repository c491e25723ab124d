"""Benchmark of precompute_depth_hints.py: images/s and per-stage split (issue 6).

Creates (or reuses) a synthetic KITTI drive at the native KITTI size 1242 x 375
(tools/make_synthetic_kitti.py), computes hints at --width x --height (default
1024 x 320) with 1 worker and with all workers, and prints images/s end to end
(worker start-up included) and in the steady state (after every worker delivered its
first pair), plus the per-image CPU time of each stage (decode, resize, SGBM, fusion = warp + SSIM +
argmin, save) summed over workers, i.e. in single-core milliseconds; CPU time is not
inflated when other jobs share the cores, wall time is.
With --accuracy it also prints the accuracy table of every single matcher and of the
fused hints against the synthetic true depth. Figures are printed, never asserted.

    python bench/precompute.py [--data data/bench_precompute_1242x375] [--frames 12]
        [--height 320 --width 1024] [--workers N] [--accuracy]
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import precompute_depth_hints as P  # noqa: E402


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
    matchers, then one whole-image batch of 12 candidates through BackprojectDepth /
    Project3D / warp / compute_reprojection_loss. Returns (sgbm_s, fuse_s)."""
    import time
    import numpy as np
    P.limit_threads(1)
    import paddle
    import layers
    matchers = P.make_matchers()
    n = len(matchers)
    K = P.intrinsics(height, width).astype(np.float32)
    T = np.eye(4, dtype=np.float32)
    T[0, 3] = -P.BASELINE

    def rep(a):
        return paddle.to_tensor(np.repeat(a[None], n, 0))

    bp, pj = layers.BackprojectDepth(n, height, width), layers.Project3D(n, height, width)
    sgbm = fuse = 0.0
    for folder, frame in pairs:
        left, right = (P.resize_image(P.decode_image(P.image_path(data, folder, frame, s, ".jpg")),
                                      width, height) for s in ("l", "r"))
        t0 = time.process_time()
        cands = np.stack([P.disparity_to_depth(m.compute(left, right) / 16.0, width)
                          for m in matchers])
        t1 = time.process_time()
        img = [paddle.to_tensor(a.transpose(2, 0, 1)[None].astype(np.float32) / 255).expand(
            [n, 3, height, width]) for a in (left, right)]
        grid = pj(bp(paddle.to_tensor(cands[:, None]), rep(np.linalg.pinv(K))), rep(K), rep(T))
        pe = layers.compute_reprojection_loss(layers.warp(img[1], grid), img[0]).numpy()[:, 0]
        pe += 1000.0 * (cands <= 0)
        np.take_along_axis(cands, np.argmin(pe, 0)[None], 0)
        t2 = time.process_time()
        sgbm += t1 - t0
        fuse += t2 - t1
    return sgbm / len(pairs), fuse / len(pairs)


def bench_workers(data, files, height, width, workers):
    """Run the precompute into a temp folder; returns the summary."""
    with tempfile.TemporaryDirectory() as tmp:
        args = P.build_parser().parse_args([
            "--data_path", data, "--filenames", files, "--save_path", tmp,
            "--height", str(height), "--width", str(width), "--num_workers", str(workers)])
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
    p.add_argument("--naive", action="store_true",
                   help="also time the straightforward method (12 matchers, whole-image fusion)")
    args = p.parse_args(argv)
    files = ensure_data(args.data, args.frames)
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; load average "
          f"{os.getloadavg()[0]:.2f} at start")
    print(f"data: {args.frames} synthetic 1242x375 pairs ({2 * args.frames} images), "
          f"hints at {args.width}x{args.height}\n")
    print("| workers | images | wall s | images/s (end to end) | images/s (steady) | "
          + " | ".join(f"{s} CPU ms" for s in P.STAGES)
          + " | CPU ms total | wall ms total | CPU-bound images/s |")
    print("|---|---|---|---|---|" + "---|" * (len(P.STAGES) + 3))
    for w in sorted({1, args.workers}):
        s = bench_workers(args.data, files, args.height, args.width, w)
        n = max(s["written"], 1)
        cpu = {k: 1000 * s["cpu_times"][k] / n for k in P.STAGES}
        wall = 1000 * sum(s["times"].values()) / n
        stages = " | ".join(f"{cpu[k]:.0f}" for k in P.STAGES)
        print(f"| {w} | {s['written']} | {s['seconds']:.1f} | {s['images_per_s']:.2f} | "
              f"{steady_rate(s):.2f} | {stages} | {sum(cpu.values()):.0f} | {wall:.0f} | "
              f"{1000 * w / sum(cpu.values()):.2f} |", flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}. Stage times are per image, summed "
          f"over workers; CPU ms is the workers' process CPU time (not inflated by other load), "
          f"wall ms the elapsed time inside the stages; CPU-bound images/s = workers / CPU "
          f"seconds per image, the rate on otherwise idle cores.")
    if args.naive:
        sg, fu = naive_cpu_per_image(args.data, P.read_pairs(files)[:3], args.height, args.width)
        print(f"\nstraightforward method, CPU per image (left base, 3 pairs): 12 SGBM "
              f"{1000 * sg:.0f} ms + whole-image fusion of 12 candidates {1000 * fu:.0f} ms = "
              f"{1000 * (sg + fu):.0f} ms")
    if args.accuracy:
        pairs = P.read_pairs(files)[:args.accuracy_frames]
        table = P.hint_accuracy(args.data, pairs, args.height, args.width)
        print(f"\naccuracy vs true depth, {len(pairs)} pairs (both sides), "
              f"{args.width}x{args.height}:\n")
        print(P.format_accuracy_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
