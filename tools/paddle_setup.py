"""Install PaddlePaddle into a virtual environment, without ever replacing a working 3.x build.

Run by tools/setup_env.sh (stdlib only: it runs before Paddle exists):

    python tools/paddle_setup.py --python .venv/bin/python [--build cpu|cu118|cu126|cu129]
                                 [--dry-run] [--force] [--stamp .venv/.paddle.stamp]

What happens, by what ``--python`` has:

* no importable Paddle               -> install the requested build;
* Paddle 2.x (or an unimportable one) -> uninstall it, install the requested build;
* Paddle 3.x or newer, CPU or GPU     -> keep it (``--force`` replaces it with the requested build).

Builds: ``cpu`` is ``paddlepaddle`` 3.x from PyPI; ``cuXXX`` is ``paddlepaddle-gpu`` 3.x from
Paddle's own index for that CUDA version (PyPI's ``paddlepaddle-gpu`` stops at 2.6).

The full check imports Paddle (seconds); once it passed, the installed distributions are
written to the stamp file, and later runs that find the same distributions stop there.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
from collections import namedtuple

PADDLE_INDEX = "https://www.paddlepaddle.org.cn/packages/stable/{}/"
VERSION_RANGE = ">=3.0,<4"
BUILDS = {
    "cpu": ("paddlepaddle", None),
    "cu118": ("paddlepaddle-gpu", PADDLE_INDEX.format("cu118")),
    "cu126": ("paddlepaddle-gpu", PADDLE_INDEX.format("cu126")),
    "cu129": ("paddlepaddle-gpu", PADDLE_INDEX.format("cu129")),
}
KNOWN_DISTS = ("paddlepaddle", "paddlepaddle-gpu")
PROBE_TIMEOUT_S = 600

# What a Python environment holds: dists, e.g. ["paddlepaddle-gpu==3.3.1"] (what pip sees);
# version / cuda (e.g. "3.3.1", "12.6" or None for a CPU build) from importing paddle, version
# None when paddle does not import; error: why the import failed.
Present = namedtuple("Present", "dists version cuda error")
NOTHING = Present([], None, None, None)

# action: "keep", "install" or "replace"; commands: pip argument lists (after `python -m pip`).
Plan = namedtuple("Plan", "action commands message")


class SetupError(Exception):
    """One-line failure, printed as ``error: ...`` with exit code 2."""


def major(version):
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def describe(present):
    if not present.dists and present.version is None:
        return "no Paddle installed"
    if present.version is None:
        return "{} installed but not importable ({})".format(", ".join(present.dists),
                                                              present.error or "import failed")
    kind = "GPU build, CUDA {}".format(present.cuda) if present.cuda else "CPU build"
    return "Paddle {} ({}{})".format(present.version, kind,
                                     ", " + ", ".join(present.dists) if present.dists else "")


def install_command(build):
    package, index = BUILDS[build]
    cmd = ["install", package + VERSION_RANGE]
    if index:
        cmd += ["-i", index]
    return cmd


def decide(build, present, force=False, explicit=False):
    """The plan for requested ``build`` given what is ``present`` (a Present). Pure."""
    if build not in BUILDS:
        raise SetupError("unknown Paddle build '{}' (PADDLE): use one of {}".format(
            build, ", ".join(BUILDS)))
    state = describe(present)
    install = install_command(build)
    uninstall = ["uninstall", "-y"] + [d.split("==")[0] for d in present.dists]
    usable = present.version is not None and (major(present.version) or 0) >= 3
    if usable and not force:
        message = "{} -> keep it".format(state)
        if (major(present.version) or 0) >= 4:
            message += " (this toolkit is tested with Paddle 3.x)"
        have_gpu = bool(present.cuda)
        wanted_cuda = "{}.{}".format(build[2:-1], build[-1]) if build != "cpu" else None  # cu126 -> 12.6
        if explicit and have_gpu != (build != "cpu"):
            message += ("; PADDLE={} asks for the {} build: to replace it, run PADDLE={} "
                        "PADDLE_FORCE=1 bash tools/setup_env.sh".format(
                            build, "CPU" if build == "cpu" else "GPU", build))
        elif explicit and have_gpu and not str(present.cuda).startswith(wanted_cuda):
            message += ("; PADDLE={} asks for CUDA {}: to replace it, run PADDLE={} "
                        "PADDLE_FORCE=1 bash tools/setup_env.sh".format(build, wanted_cuda, build))
        return Plan("keep", [], message)
    if not present.dists:
        return Plan("install", [install], "{} -> install {}".format(state, _what(build)))
    why = " (PADDLE_FORCE)" if usable else ""
    return Plan("replace", [uninstall, install],
                "{} -> replace it{} with {}".format(state, why, _what(build)))


def _what(build):
    package, index = BUILDS[build]
    return "{} 3.x from {}".format(package, index or "PyPI")


_DISTS_CODE = """
import importlib.metadata as m, importlib.util as u, json
names = %r
found = []
for n in names:
    try:
        found.append(n + "==" + m.version(n))
    except m.PackageNotFoundError:
        pass
if not found and u.find_spec("paddle") is not None:
    for n in m.packages_distributions().get("paddle", []):
        found.append(n + "==" + m.version(n))
print(json.dumps(found))
""" % (KNOWN_DISTS,)

_IMPORT_CODE = """
import json, warnings
warnings.filterwarnings("ignore")
import paddle
cuda = paddle.version.cuda() if paddle.is_compiled_with_cuda() else None
print(json.dumps([paddle.__version__, None if cuda in (None, "False") else str(cuda)]))
"""


def _run_python(python, code):
    out = subprocess.run([python, "-c", code], capture_output=True, text=True,
                         timeout=PROBE_TIMEOUT_S)
    return out.returncode, out.stdout.strip().splitlines(), out.stderr.strip().splitlines()


def probe_dists(python):
    """The Paddle distributions pip sees in ``python``'s environment (fast, no import)."""
    if not os.path.exists(python):
        return []
    rc, out, err = _run_python(python, _DISTS_CODE)
    if rc != 0 or not out:
        raise SetupError("could not inspect the environment ({}): {}".format(
            python, err[-1] if err else "no output"))
    return json.loads(out[-1])


def probe(python, dists=None):
    """What ``python`` has: its Paddle distributions and, if one imports, version and CUDA."""
    dists = probe_dists(python) if dists is None else dists
    if not os.path.exists(python):
        return NOTHING
    rc, out, err = _run_python(python, _IMPORT_CODE)
    if rc == 0 and out:
        try:
            version, cuda = json.loads(out[-1])
            return Present(dists, version, cuda, None)
        except ValueError:
            pass
    if not dists and any("No module named 'paddle'" in line for line in err):
        return NOTHING
    return Present(dists, None, None, err[-1] if err else "import failed")


def read_stamp(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter of the environment")
    ap.add_argument("--build", default=None, help="cpu (default), cu118, cu126 or cu129")
    ap.add_argument("--dry-run", action="store_true", help="print the plan, install nothing")
    ap.add_argument("--force", action="store_true", help="replace a working Paddle 3.x too")
    ap.add_argument("--stamp", default=None, help="file recording the last verified Paddle")
    args = ap.parse_args(argv)
    build = args.build or "cpu"
    tag = "[setup] dry run:" if args.dry_run else "[setup]"
    try:
        if build not in BUILDS:
            decide(build, NOTHING)  # raises the one-line error
        dists = probe_dists(args.python)
        stamp = read_stamp(args.stamp) if args.stamp else None
        if (stamp and not args.force and dists and stamp.get("dists") == dists
                and not (args.build and bool(stamp.get("cuda")) != (build != "cpu"))):
            if args.dry_run:
                print("{} {} (checked before): nothing to install".format(tag, ", ".join(dists)))
            return 0
        present = probe(args.python, dists)
        plan = decide(build, present, force=args.force, explicit=args.build is not None)
        print("{} {}".format(tag, plan.message))
        for cmd in plan.commands:
            line = " ".join(shlex.quote(c) for c in [args.python, "-m", "pip"] + cmd)
            if args.dry_run:
                print("{} would run: {}".format(tag, line))
                continue
            print("[setup] " + line)
            rc = subprocess.run([args.python, "-m", "pip"] + cmd).returncode
            if rc != 0:
                raise SetupError("installing Paddle failed ({}): check the network / index above, "
                                 "or install Paddle 3.x by hand into this environment and rerun"
                                 .format(line))
        if args.dry_run:
            if not plan.commands:
                print("{} nothing to install".format(tag))
            return 0
        if plan.commands:
            present = probe(args.python)
            if present.version is None or (major(present.version) or 0) < 3:
                raise SetupError("Paddle does not import after installing it ({}): {}".format(
                    args.python, describe(present)))
            print("[setup] installed {}".format(describe(present)))
        if args.stamp:
            with open(args.stamp, "w") as f:
                json.dump({"dists": present.dists, "version": present.version,
                           "cuda": present.cuda}, f)
    except SetupError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
