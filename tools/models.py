#!/usr/bin/env python
"""The published Depth Hints / Monodepth2 models by name: list them, fetch one, find it.

    python tools/models.py list                  # names, sizes, published metrics, cached or not
    python tools/models.py fetch mono+stereo_640x192   # download once, check, convert; prints the folder
    python tools/models.py path DH-HR-Resnet50   # the cached folder (exit 2 if not fetched)

A fetched model is a weights folder (``encoder.pdparams``, ``depth.pdparams``, ...) under
``<cache>/models/<name>/``; cache: ``--cache DIR``, else ``$DEPTH_HINTS_CACHE``, else
``~/.cache/depth_hints_paddle``. No PyTorch needed. See weights/README.md, "Published models
by name" (offline use: the error names the path to put a hand-downloaded zip at).
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import published_models as pm  # noqa: E402
from utils import ToolkitError, run_cli  # noqa: E402


def _num(value, fmt="{:.3f}"):
    return "-" if value is None else fmt.format(value)


def list_table(cache=None):
    """The lines ``list`` prints."""
    rows = [("name", "family", "modality", "size", "layers", "abs_rel", "a1", "cached")]
    for m in pm.list_models():
        rows.append((m.name, m.family, m.modality, m.size, str(m.resnet_layers), _num(m.abs_rel), _num(m.a1),
                     "yes" if pm.cached(m.name, cache) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"cache: {pm.cache_dir(cache)} (--cache, ${pm.ENV_CACHE}); metrics as published "
                 "(KITTI Eigen split, Watson et al. / Godard et al. ICCV 2019)")
    return lines


def _stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def run(args):
    if args.command == "list":
        print("\n".join(list_table(args.cache)))
        return 0
    if args.command == "fetch":
        print(pm.fetch(args.name, args.cache, log=_stderr))
        return 0
    folder = pm.cached(args.name, args.cache)
    if folder is None:
        raise ToolkitError(f"{args.name} is not fetched yet ({pm.model_folder(args.name, args.cache)}): "
                           f"run python tools/models.py fetch {args.name}")
    print(folder)
    return 0


def parse_args(argv=None):
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument("--cache", default=argparse.SUPPRESS,
                       help=f"cache folder (default: ${pm.ENV_CACHE}, else {pm.DEFAULT_CACHE})")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], parents=[cache],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", metavar="{list,fetch,path}", required=True)
    sub.add_parser("list", parents=[cache], help="the published models, their metrics, cached or not")
    for name, text in (("fetch", "download, check and convert a model once; prints its folder"),
                       ("path", "print the cached folder of a model (exit 2 if it is not fetched)")):
        sp = sub.add_parser(name, parents=[cache], help=text)
        sp.add_argument("name", help=f"a published model ({pm.LIST_HINT})")
    args = p.parse_args(argv)
    args.cache = getattr(args, "cache", None)
    return args


def main(argv=None):
    args = parse_args(argv)
    return run_cli(run, args)


if __name__ == "__main__":
    sys.exit(main())
