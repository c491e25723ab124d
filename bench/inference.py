"""Inference speed of the depth network: the dynamic Paddle model, the exported model in
Paddle Inference and in ONNX Runtime, and the same architecture in PyTorch eager, in one run
(never asserted; prints figures).

    python bench/inference.py                         # 640x192 and 1024x320, batch 1 and 4
    python bench/inference.py --sizes 640x192 --rounds 20 --throughput_batch 0
    python bench/inference.py --load_weights_folder W # a trained model instead of random weights

The model (a random ResNet18 depth net unless ``--load_weights_folder``) is exported once
with export_model.py (``--output disp``, dynamic batch and size) to a temporary folder, in
both formats; each export is checked against the dynamic model by export_model.py. Every
runtime uses all cores (``--threads``): Paddle's math threads (runtime.set_cpu_threads),
Paddle Inference's ``set_cpu_math_library_num_threads`` (its default is 1), ONNX Runtime's
intra-op threads, ``torch.set_num_threads``. The runtimes are timed interleaved, round by
round with the order rotated, so that load from other processes hits all of them alike;
a short pause before each call (``--pause``) lets the previous runtime's threads go idle
(ONNX Runtime's spin-wait after a run slowed the next runtime by ~10 % without it). The
load average is printed at start and end. Single-image latency is the median (and the
minimum) of ``--rounds`` calls at batch 1; images/s at batch 1 is 1000 / median ms, and at
``--throughput_batch`` B it is B / median seconds per call.
"""
import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from runtime import cpu_env_defaults, quiet_paddle_notices  # noqa: E402

cpu_env_defaults()  # before paddle is imported
os.environ.setdefault("GLOG_minloglevel", "2")
quiet_paddle_notices()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["640x192", "1024x320"], help="WxH")
    p.add_argument("--rounds", type=int, default=12, help="timed calls per runtime and size")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    p.add_argument("--throughput_batch", type=int, default=4,
                   help="also time this batch size (0: batch 1 only)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--pause", type=float, default=0.1,
                   help="seconds of idle before each timed call (lets spinning threads park)")
    p.add_argument("--load_weights_folder", default=None,
                   help="a trained models/weights_N folder (default: random ResNet18 weights)")
    p.add_argument("--runtimes", nargs="+",
                   default=["paddle-dynamic", "paddle-inference", "paddle-inference-no-onednn",
                            "onnxruntime", "torch-eager"])
    return p.parse_args(argv)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def random_weights(folder):
    """A random ResNet18 depth model folder (640x192, stereo), as train.py would write it."""
    import paddle

    import networks
    paddle.seed(0)
    enc = networks.ResnetEncoder(18, False)
    dec = networks.DepthDecoder(enc.num_ch_enc)
    state = dict(enc.state_dict())
    state.update(height=192, width=640, use_stereo=True)
    paddle.save(state, os.path.join(folder, "encoder.pdparams"))
    paddle.save(dec.state_dict(), os.path.join(folder, "depth.pdparams"))
    return folder


def make_runners(names, weights, tmp, threads):
    """{name: fn(images numpy) -> output} for the runtimes that are available."""
    import export_model
    from runtime import set_cpu_threads

    runners, skipped = {}, {}
    set_cpu_threads(threads)
    net, meta = export_model.build_depth_net(weights)
    if "paddle-dynamic" in names:
        import paddle

        def dynamic(images):
            with paddle.no_grad():
                return net(paddle.to_tensor(images)).numpy()
        runners["paddle-dynamic"] = dynamic
    if {"paddle-inference", "paddle-inference-no-onednn"} & set(names):
        prefix = os.path.join(tmp, "paddle", "depth")
        export_model.export(weights, prefix, fmt="paddle")
        if "paddle-inference" in names:
            runners["paddle-inference"] = export_model.ExportedRunner(prefix, "paddle", threads)
        if "paddle-inference-no-onednn" in names:
            runners["paddle-inference-no-onednn"] = _paddle_no_onednn(prefix, threads)
    if "onnxruntime" in names:
        try:
            prefix = os.path.join(tmp, "onnx", "depth")
            export_model.export(weights, prefix, fmt="onnx")
            runners["onnxruntime"] = export_model.ExportedRunner(prefix, "onnx", threads)
        except Exception as exc:  # paddle2onnx / onnxruntime missing or failing
            skipped["onnxruntime"] = str(exc).splitlines()[0]
    if "torch-eager" in names:
        try:
            runners["torch-eager"] = _torch_eager(meta["num_layers"], threads)
        except Exception as exc:
            skipped["torch-eager"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return runners, skipped


def _paddle_no_onednn(prefix, threads):
    """Paddle Inference with oneDNN switched off (the plain CPU kernels), for comparison."""
    import paddle.inference as paddle_infer
    config = paddle_infer.Config(prefix + ".json", prefix + ".pdiparams")
    config.disable_glog_info()
    config.disable_mkldnn()
    config.set_cpu_math_library_num_threads(threads)
    predictor = paddle_infer.create_predictor(config)
    inp = predictor.get_input_handle(predictor.get_input_names()[0])
    out = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(images):
        inp.reshape(list(images.shape))
        inp.copy_from_cpu(images)
        predictor.run()
        return out.copy_to_cpu()
    return run


def _torch_eager(num_layers, threads):
    """The same architecture in PyTorch eager (tools/torch_reference.py), random weights."""
    if num_layers != 18:
        raise ValueError(f"the PyTorch reference is a ResNet18, the model a ResNet{num_layers}")
    import torch

    from tools.torch_reference import TDepthDecoder, TEncoder
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    enc, dec = TEncoder().eval(), TDepthDecoder(scales=[0]).eval()

    def run(images):
        with torch.no_grad():
            return dec(enc(torch.from_numpy(images)))[("disp", 0)].numpy()
    return run


def time_interleaved(runners, images, rounds, warmup, pause):
    """{name: [seconds per call]}; each round calls every runner once, order rotated, with
    ``pause`` seconds before each call so that the previous runtime's threads (ONNX
    Runtime's spin after a run) are idle again."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name](images)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(pause)
            t0 = time.perf_counter()
            runners[name](images)
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None):
    args = parse_args(argv)
    import paddle
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; threads per runtime: {args.threads}; "
          f"Python {platform.python_version()}, Paddle {paddle.__version__}", flush=True)
    for mod in ("onnxruntime", "paddle2onnx", "torch"):
        try:
            print(f"  {mod} {__import__(mod).__version__}")
        except ImportError:
            print(f"  {mod}: not installed")
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        weights = args.load_weights_folder or random_weights(tmp)
        runners, skipped = make_runners(args.runtimes, weights, tmp, args.threads)
        for name, why in skipped.items():
            print(f"  (skipped {name}: {why})")
        print(f"\nload average at start {load_start[0]:.2f} (1 min), {load_start[1]:.2f} (5 min)")
        rows = []
        for size in args.sizes:
            width, height = (int(v) for v in size.lower().split("x"))
            batches = [1] + ([args.throughput_batch] if args.throughput_batch > 1 else [])
            for batch in batches:
                images = np.random.RandomState(0).rand(batch, 3, height, width).astype(np.float32)
                rounds = args.rounds if batch == 1 else max(3, args.rounds // 2)
                times = time_interleaved(runners, images, rounds,
                                         args.warmup if batch == 1 else 1, args.pause)
                for name, ts in times.items():
                    med, best = float(np.median(ts)), float(np.min(ts))
                    rows.append((size, batch, name, med * 1000, best * 1000, batch / med))
                print(f"  {size} batch {batch}: done (load {os.getloadavg()[0]:.2f})", flush=True)
    load_end = os.getloadavg()
    print(f"load average at end {load_end[0]:.2f} (1 min), {load_end[1]:.2f} (5 min)\n")
    print("| size | batch | runtime | median ms / call | min ms | images/s | vs torch eager |")
    print("|---|---|---|---|---|---|---|")
    ref = {(r[0], r[1]): r[3] for r in rows if r[2] == "torch-eager"}
    for size, batch, name, med, best, ips in rows:
        rel = f"{med / ref[size, batch]:.2f}x" if (size, batch) in ref else "-"
        print(f"| {size} | {batch} | {name} | {med:.1f} | {best:.1f} | {ips:.2f} | {rel} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
