"""Benchmark one training step of the Depth Hints trainer (never asserted; prints figures).

For each configuration (resolution, batch size, S or MS, with or without hints) it builds a
`trainer.Trainer` without data sets, feeds it a fixed random batch with the real keys and
shapes (KITTI intrinsics, stereo_T, hints with ~30% invalid pixels) and reports the median
seconds per step, images/s and the process's peak RSS. `--profile` adds a paddle.profiler
per-op table for the first configuration.

    python bench/train_step.py                      # quick: 192x640 b4 S+hints
    python bench/train_step.py --all                # 192x640, b4 and b12, S/MS, +-hints
    python bench/train_step.py --batch 4 12 --modes S MS --hints 1 0 --steps 5 --warmup 2
    python bench/train_step.py --profile
    python bench/train_step.py --data_path DATA --split SPLIT   # + the real data loader (images/s)

With `--data_path`, the trainer's own DataLoader (workers = CPU count) feeds the steps, so
images/s includes loading; the split needs enough samples for warmup + steps batches.
"""
import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from runtime import cpu_env_defaults  # noqa: E402

cpu_env_defaults()  # before paddle is imported


def make_opt(height, width, batch, mode, hints, num_layers=18, data_path=None, split=None):
    from options import MonodepthOptions
    args = ["--data_path", data_path or "/nonexistent", "--split", split or "eigen_zhou", "--height", str(height), "--width", str(width), "--batch_size", str(batch),
            "--weights_init", "scratch", "--num_layers", str(num_layers), "--use_stereo",
            "--log_dir", "/tmp/dh_bench_logs", "--device", "cpu"]
    args += ["--frame_ids", "0"] if mode == "S" else ["--frame_ids", "0", "-1", "1"]
    if hints:
        args += ["--use_depth_hints"]
    return MonodepthOptions().parse(args)


def random_batch(opt, frame_ids, seed=0):
    """A batch dict of numpy arrays with the data set's keys (docs/METHOD.md section 1, docs/ARCHITECTURE.md)."""
    rng = np.random.default_rng(seed)
    b, h, w = opt.batch_size, opt.height, opt.width
    batch = {}
    for s in opt.scales:
        hs, ws = h // 2 ** s, w // 2 ** s
        K = np.array([[0.58 * ws, 0, 0.5 * ws, 0], [0, 1.92 * hs, 0.5 * hs, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                     np.float32)
        batch[("K", s)] = np.repeat(K[None], b, 0)
        batch[("inv_K", s)] = np.repeat(np.linalg.pinv(K)[None], b, 0).astype(np.float32)
        for f in frame_ids:
            img = rng.random((b, 3, hs, ws), dtype=np.float32)
            batch[("color", f, s)] = img
            batch[("color_aug", f, s)] = img.copy()
    T = np.eye(4, dtype=np.float32)
    T[0, 3] = -0.1
    batch["stereo_T"] = np.repeat(T[None], b, 0)
    if opt.use_depth_hints:
        hint = (rng.random((b, 1, h, w), dtype=np.float32) * 10 + 0.5)
        hint[rng.random(hint.shape) < 0.3] = 0
        batch["depth_hint"] = hint
        batch["depth_hint_mask"] = (hint > 0).astype(np.float32)
    return batch


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def loader_batches(tr):
    """Endless batches from the trainer's own training DataLoader."""
    epoch = 0
    while True:
        tr.train_sampler.set_epoch(epoch)
        for b in tr.train_loader:
            yield b
        epoch += 1


def bench_one(height, width, batch, mode, hints, steps, warmup, profile=False, num_layers=18,
              data_path=None, split=None):
    from trainer import Trainer
    opt = make_opt(height, width, batch, mode, hints, num_layers, data_path, split)
    tr = Trainer(opt, build_data=data_path is not None)
    tr.model.train()
    if data_path is None:
        fixed = random_batch(opt, tr.loss.frame_ids)
        batches = iter(lambda: fixed, None)
    else:
        batches = loader_batches(tr)
    for _ in range(warmup):
        tr.train_step(next(batches))
    times, cpu = [], []
    prof = None
    if profile:
        import paddle.profiler as profiler
        prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], timer_only=False)
        prof.start()
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        tr.train_step(next(batches))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if prof is not None:
            prof.step()
    if prof is not None:
        prof.stop()
        prof.summary(sorted_by=profiler.SortedKeys.CPUTotal, op_detail=False, thread_sep=False,
                     time_unit="ms")
    med = float(np.median(times))
    del tr
    return med, batch / med, float(np.median(cpu))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--batch", type=int, nargs="+", default=[4])
    p.add_argument("--modes", nargs="+", default=["S"], choices=["S", "MS"])
    p.add_argument("--hints", type=int, nargs="+", default=[1], choices=[0, 1])
    p.add_argument("--num_layers", type=int, default=18)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="paddle CPU math threads (default: all cores)")
    p.add_argument("--data_path", default=None, help="time with the real data loader on this data")
    p.add_argument("--split", default=None, help="split name or folder for --data_path")
    p.add_argument("--all", action="store_true", help="batch 4 and 12, S and MS, with and without hints")
    p.add_argument("--profile", action="store_true", help="paddle.profiler op table for the first config")
    p.add_argument("--plain", action="store_true",
                   help="switch cpu_kernels off (the plain layers.py ops, as on a GPU)")
    a = p.parse_args(argv)
    if a.plain:
        import cpu_kernels
        cpu_kernels.ENABLED = False
    if a.all:
        a.batch, a.modes, a.hints = [4, 12], ["S", "MS"], [1, 0]
    if a.threads:
        os.environ["OMP_NUM_THREADS"] = str(a.threads)  # read by runtime.set_cpu_threads
    print("| config | batch | s/step (median of {}) | images/s | CPU s/step | peak RSS (MB) |".format(a.steps))
    print("|---|---|---|---|---|---|")
    configs = [(m, h, b) for m in a.modes for h in a.hints for b in a.batch]
    for i, (mode, hints, b) in enumerate(configs):
        name = "{} {}x{} R{}{}{}{}".format(mode, a.width, a.height, a.num_layers, " +hints" if hints else "",
                                           " +loader" if a.data_path else "", " plain ops" if a.plain else "")
        if len(configs) > 1:  # one process per configuration, so that peak RSS is its own
            cmd = [sys.executable, os.path.abspath(__file__), "--height", str(a.height), "--width", str(a.width),
                   "--batch", str(b), "--modes", mode, "--hints", str(hints), "--num_layers", str(a.num_layers),
                   "--steps", str(a.steps), "--warmup", str(a.warmup)]
            cmd += ["--profile"] if a.profile and i == 0 else []
            cmd += ["--threads", str(a.threads)] if a.threads else []
            cmd += ["--plain"] if a.plain else []
            cmd += ["--data_path", a.data_path, "--split", a.split] if a.data_path else []
            out = subprocess.run(cmd, capture_output=True, text=True)
            rows = [l for l in out.stdout.splitlines() if l.startswith("| " + mode)]
            print(rows[0] if rows else "| {} | {} | failed: {} |".format(name, b, out.stderr.strip()[-300:]),
                  flush=True)
            continue
        med, ips, cpu = bench_one(a.height, a.width, b, mode, hints, a.steps, a.warmup, profile=a.profile,
                                  num_layers=a.num_layers, data_path=a.data_path, split=a.split)
        print("| {} | {} | {:.3f} | {:.2f} | {:.2f} | {:.0f} |".format(name, b, med, ips, cpu, peak_rss_mb()),
              flush=True)


if __name__ == "__main__":
    main()
