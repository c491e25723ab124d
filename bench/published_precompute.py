"""Time the published Depth Hints precompute script on this machine, beside ours.

The published script (Niantic's ``precompute_depth_hints.py``, github.com/nianticlabs/
depth-hints) is not part of this toolkit and is never copied into it: point
``--published`` at your own checkout. It was written for PyTorch 0.4.1 on a GPU, so a
temporary copy of its three files (``precompute_depth_hints.py``, ``layers.py``,
``utils.py``) is run with the least change that lets it run on today's CPU stack, each
change checked to find exactly the places it expects (else the run stops and names it):

- the two ``.cuda()`` calls on its projection layers are dropped when no GPU is present;
- ``Image.ANTIALIAS`` (removed in Pillow 10) becomes its alias ``Image.LANCZOS``;
- ``grid_sample`` gets ``align_corners=True``, PyTorch 0.4.1's behaviour (the default
  changed in PyTorch 1.3; this toolkit's ``layers.warp`` uses the same setting);
- where torchvision is missing, a stand-in ``torchvision.transforms.Resize`` (PIL
  ``resize``, the call torchvision makes for a PIL image) is put beside the copy.

It then runs as published: one image per split line, DataLoader with 12 workers, fusion
in the main process (PyTorch's own threads). Needs PyTorch (``pip install torch``).

    python bench/published_precompute.py --published ~/depth-hints \
        [--data data/bench_precompute_1242x375 --frames 12 --height 320 --width 1024]

(the data as bench/precompute.py creates it).

``bench/precompute.py --published DIR`` runs this after timing ours, in the same window,
and prints the ratio. Figures are printed, never asserted.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

FILES = ("precompute_depth_hints.py", "layers.py", "utils.py")
LOADER_WORKERS = 12  # the published script's DataLoader num_workers

# (file, old, new, how many times the published file holds ``old``)
_CUDA = ("precompute_depth_hints.py", ").cuda()\n", ")\n", 2)  # the two projection layers
_ANTIALIAS = ("precompute_depth_hints.py", "Image.ANTIALIAS", "Image.LANCZOS", 1)
_ALIGN = ("precompute_depth_hints.py", "padding_mode='border')", "padding_mode='border', align_corners=True)", 1)

_RESIZE_STUB = '''"""Stand-in for torchvision.transforms.Resize on PIL images (bench/published_precompute.py)."""


class Resize:
    def __init__(self, size, interpolation=None):
        self.height, self.width = size
        self.interpolation = interpolation

    def __call__(self, img):
        return img.resize((self.width, self.height), self.interpolation)
'''


class PublishedError(Exception):
    """The published checkout or its run is not usable; the message says why."""


def _probe(python, code):
    return subprocess.run([python, "-c", code], capture_output=True, text=True).returncode == 0


def prepare(published, work, python=sys.executable):
    """Copy the published files into ``work`` and patch them; returns the changes made."""
    missing = [f for f in FILES if not os.path.isfile(os.path.join(published, f))]
    if missing:
        raise PublishedError(f"--published {published}: {', '.join(missing)} not found; expected a "
                             f"checkout of github.com/nianticlabs/depth-hints")
    if not _probe(python, "import torch"):
        raise PublishedError(f"the published script needs PyTorch, which {python} cannot import: "
                             f"pip install torch")
    for f in FILES:
        shutil.copy(os.path.join(published, f), os.path.join(work, f))
    patches = [_ALIGN]
    if not _probe(python, "import torch, sys; sys.exit(not torch.cuda.is_available())"):
        patches.append(_CUDA)
    if not _probe(python, "from PIL import Image; Image.ANTIALIAS"):
        patches.append(_ANTIALIAS)
    done = []
    for name, old, new, expected in patches:
        path = os.path.join(work, name)
        with open(path) as fh:
            text = fh.read()
        count = text.count(old)
        if count != expected:
            raise PublishedError(f"{os.path.join(published, name)}: expected {expected} x {old.strip()!r}, "
                                 f"found {count}; this benchmark knows the published version only")
        with open(path, "w") as fh:
            fh.write(text.replace(old, new))
        done.append(f"{old.strip()} -> {new.strip()}")
    if not _probe(python, "import torchvision"):
        os.makedirs(os.path.join(work, "torchvision"))
        open(os.path.join(work, "torchvision", "__init__.py"), "w").close()
        with open(os.path.join(work, "torchvision", "transforms.py"), "w") as fh:
            fh.write(_RESIZE_STUB)
        done.append("torchvision.transforms.Resize -> PIL resize stand-in")
    return done


def time_published(published, data, filenames, height, width, python=sys.executable, save_path=None,
                   timeout_per_image=120):
    """Run the (patched) published script on ``filenames`` (one image per line) and time it.
    Returns ``{"images", "seconds", "images_per_s", "steady", "changes", "save_path"}``;
    "steady" = images/s after the first 12 outputs (every loader worker delivered one), from
    the output files' times. The hints stay in
    ``save_path`` (a temp folder removed on return when None)."""
    with open(filenames) as fh:
        n = sum(1 for line in fh if line.strip())
    with tempfile.TemporaryDirectory() as work:
        changes = prepare(published, work, python)
        out = save_path or os.path.join(work, "hints")
        cmd = [python, "precompute_depth_hints.py", "--data_path", os.path.abspath(data),
               "--filenames", os.path.abspath(filenames), "--save_path", os.path.abspath(out),
               "--height", str(height), "--width", str(width), "--overwrite_saved_depths"]
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                                  timeout=60 + timeout_per_image * n)
        except subprocess.TimeoutExpired:
            raise PublishedError(f"the published script did not finish {n} images in "
                                 f"{60 + timeout_per_image * n} s") from None
        seconds = time.time() - t0
        if proc.returncode:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise PublishedError(f"the published script exited with {proc.returncode}: {tail}")
        times = sorted(os.path.getmtime(p) for p in glob.glob(os.path.join(out, "**", "*.npy"),
                                                              recursive=True))
        if len(times) != n:
            raise PublishedError(f"the published script wrote {len(times)} of {n} hints")
        k = min(LOADER_WORKERS, n - 1)  # as for ours: after every worker delivered its first item
        steady = (n - k) / (times[-1] - times[k - 1]) if k > 0 and times[-1] > times[k - 1] else float("nan")
        return {"images": n, "seconds": seconds, "images_per_s": n / seconds, "steady": steady,
                "changes": changes, "save_path": out}


def compare_hints(ours, theirs):
    """Agreement of two hint folders over the files both hold: fraction of equal pixels, of
    pixels hinted in one and not the other, and the largest relative depth difference."""
    equal = one_sided = total = 0
    rel = 0.0
    paths = sorted(glob.glob(os.path.join(theirs, "**", "*.npy"), recursive=True))
    for p in paths:
        a = np.load(os.path.join(ours, os.path.relpath(p, theirs))).reshape(-1)
        b = np.load(p).reshape(-1).astype(np.float32)
        equal += int(np.count_nonzero(np.isclose(a, b, rtol=1e-5, atol=0)))
        one_sided += int(np.count_nonzero((a > 0) != (b > 0)))
        both = (a > 0) & (b > 0)
        if both.any():
            rel = max(rel, float(np.max(np.abs(a[both] - b[both]) / b[both])))
        total += a.size
    return {"files": len(paths), "equal": equal / max(total, 1), "one_sided": one_sided / max(total, 1),
            "max_rel": rel}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--published", required=True, help="a checkout of github.com/nianticlabs/depth-hints")
    p.add_argument("--data", default=os.path.join(ROOT, "data", "bench_precompute_1242x375"))
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--width", type=int, default=1024)
    args = p.parse_args(argv)
    files = os.path.join(args.data, f"bench_{args.frames}.txt")
    if not os.path.isfile(files):
        print(f"error: no benchmark data ({files}): `python bench/precompute.py --frames {args.frames}` "
              f"creates it (or run that with --published, which times both)", file=sys.stderr)
        return 2
    try:
        r = time_published(args.published, args.data, files, args.height, args.width)
    except PublishedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"published script ({'; '.join(r['changes'])}): {r['images']} images at "
          f"{args.width}x{args.height} in {r['seconds']:.1f} s = {r['images_per_s']:.2f} images/s end to "
          f"end, {r['steady']:.2f} steady")
    return 0


if __name__ == "__main__":
    sys.exit(main())
