"""The installer (tools/setup_env.sh + tools/paddle_setup.py) respects an installed Paddle.

The decisions are tested directly on tools/paddle_setup.decide; the shell script runs for
real against throw-away virtual environments in a temp folder (made without pip, so any
attempt to install would fail) holding a fake ``paddle`` package and its pip metadata, in
dry-run mode and once for real where nothing must be installed. Nothing is downloaded.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tools import paddle_setup as ps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = os.path.join(ROOT, "tools", "setup_env.sh")

CPU = ps.Present(["paddlepaddle==3.3.1"], "3.3.1", None, None)
GPU = ps.Present(["paddlepaddle-gpu==3.3.1"], "3.3.1", "12.6", None)
OLD_GPU = ps.Present(["paddlepaddle-gpu==2.6.2"], "2.6.2", "12.0", None)
BROKEN = ps.Present(["paddlepaddle==3.3.1"], None, None, "ImportError: libfoo.so")


# ---- decisions -------------------------------------------------------------------------

def test_nothing_installed_gets_the_requested_build():
    plan = ps.decide("cpu", ps.NOTHING)
    assert plan.action == "install"
    assert plan.commands == [["install", "paddlepaddle>=3.0,<4"]]
    for cuda in ("cu118", "cu126", "cu129"):
        plan = ps.decide(cuda, ps.NOTHING, explicit=True)
        assert plan.commands == [["install", "paddlepaddle-gpu>=3.0,<4", "-i",
                                  "https://www.paddlepaddle.org.cn/packages/stable/%s/" % cuda]]


@pytest.mark.parametrize("present", [CPU, GPU], ids=["cpu", "gpu"])
@pytest.mark.parametrize("build,explicit", [("cpu", False), ("cpu", True), ("cu126", True), ("cu118", True)])
def test_working_paddle3_is_never_replaced(present, build, explicit):
    plan = ps.decide(build, present, explicit=explicit)
    assert plan.action == "keep" and plan.commands == []


def test_mismatch_is_explained_only_when_asked_for():
    assert "PADDLE_FORCE" not in ps.decide("cpu", GPU).message  # the default never nags
    note = ps.decide("cu126", CPU, explicit=True).message
    assert "PADDLE=cu126 PADDLE_FORCE=1 bash tools/setup_env.sh" in note
    assert "GPU build, CUDA 12.6" in ps.decide("cu126", GPU, explicit=True).message
    assert "PADDLE_FORCE" not in ps.decide("cu126", GPU, explicit=True).message
    # a GPU build for another CUDA version is kept, and the way to move it is named
    other = ps.decide("cu118", GPU, explicit=True)
    assert other.action == "keep"
    assert "PADDLE=cu118 asks for CUDA 11.8: to replace it, run PADDLE=cu118 PADDLE_FORCE=1" in other.message
    assert "PADDLE_FORCE" not in ps.decide("cu118", GPU).message  # the default never nags


@pytest.mark.parametrize("present", [OLD_GPU, BROKEN], ids=["paddle2", "broken"])
def test_paddle2_or_broken_is_replaced(present):
    plan = ps.decide("cpu", present)
    assert plan.action == "replace"
    name = present.dists[0].split("==")[0]
    assert plan.commands == [["uninstall", "-y", name], ["install", "paddlepaddle>=3.0,<4"]]


def test_force_replaces_a_working_build():
    plan = ps.decide("cu126", CPU, force=True, explicit=True)
    assert plan.action == "replace"
    assert plan.commands[0] == ["uninstall", "-y", "paddlepaddle"]
    assert plan.commands[1][:2] == ["install", "paddlepaddle-gpu>=3.0,<4"]


def test_unknown_build_is_one_line_error():
    with pytest.raises(ps.SetupError) as err:
        ps.decide("cu120", ps.NOTHING)
    assert "PADDLE" in str(err.value) and "cu126" in str(err.value) and "\n" not in str(err.value)


def test_requirements_do_not_pin_paddle():
    lines = [l.split("#")[0].strip() for l in open(os.path.join(ROOT, "requirements.txt"))]
    assert not [l for l in lines if l.lower().startswith("paddlepaddle")]


# ---- the shell script, for real, on throw-away environments ------------------------------

FAKE_PADDLE = textwrap.dedent('''
    import os
    __version__ = {version!r}
    with open(os.path.join(os.path.dirname(__file__), "imports.log"), "a") as f:
        f.write("import\\n")
    def is_compiled_with_cuda():
        return {cuda!r} is not None
    class version:
        @staticmethod
        def cuda():
            return {cuda!r} or "False"
    ''')


def make_env(path, dist=None, version=None, cuda=None):
    """A venv without pip; with ``dist``, a fake importable paddle and its pip metadata."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    py = os.path.join(str(path), "bin", "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    if dist:
        os.makedirs(os.path.join(site, "paddle"))
        with open(os.path.join(site, "paddle", "__init__.py"), "w") as f:
            f.write(FAKE_PADDLE.format(version=version, cuda=cuda))
        info = os.path.join(site, "%s-%s.dist-info" % (dist.replace("-", "_"), version))
        os.makedirs(info)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (dist, version))
    return py, site


def run_setup(venv, *args, **env_vars):
    env = {k: v for k, v in os.environ.items() if k not in ("PADDLE", "PADDLE_FORCE", "DRY_RUN")}
    env.update(VENV=str(venv), PYTHON=sys.executable, **env_vars)
    return subprocess.run(["bash", SETUP] + list(args), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def listing(folder):
    """Files under ``folder``, leaving out what importing the fake paddle writes."""
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, files in os.walk(folder) for f in files
                  if f != "imports.log" and "__pycache__" not in d)


def test_dry_run_nothing_installed(tmp_path):
    venv = tmp_path / "fresh"
    out = run_setup(venv, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "would create a virtual environment" in out.stdout
    assert "no Paddle installed -> install paddlepaddle 3.x from PyPI" in out.stdout
    assert "pip install 'paddlepaddle>=3.0,<4'" in out.stdout
    assert "pip install -r " in out.stdout
    assert not venv.exists()
    gpu = run_setup(venv, DRY_RUN="1", PADDLE="cu126")
    assert gpu.returncode == 0, gpu.stderr
    assert ("pip install 'paddlepaddle-gpu>=3.0,<4' -i https://www.paddlepaddle.org.cn/packages/stable/cu126/"
            in gpu.stdout)
    assert not venv.exists()


@pytest.mark.parametrize("dist,cuda", [("paddlepaddle", None), ("paddlepaddle-gpu", "12.6")],
                         ids=["cpu_present", "gpu_present"])
@pytest.mark.slow
def test_dry_run_keeps_a_present_paddle3(tmp_path, dist, cuda):
    venv = tmp_path / "env"
    make_env(venv, dist, "3.3.1", cuda)
    before = listing(str(venv))
    for extra in ({}, {"PADDLE": "cpu"}, {"PADDLE": "cu126"}):
        out = run_setup(venv, "--dry-run", **extra)
        assert out.returncode == 0, out.stderr
        assert "Paddle 3.3.1" in out.stdout and "-> keep it" in out.stdout, out.stdout
        assert ("GPU build, CUDA 12.6" if cuda else "CPU build") in out.stdout
        assert "install 'paddle" not in out.stdout and "uninstall" not in out.stdout
        assert "pip install -r " in out.stdout  # the other requirements were never installed
    assert listing(str(venv)) == before  # a dry run writes nothing (only the probe imported paddle)


def test_dry_run_replaces_paddle2(tmp_path):
    venv = tmp_path / "old"
    make_env(venv, "paddlepaddle-gpu", "2.6.2", "12.0")
    out = run_setup(venv, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "Paddle 2.6.2" in out.stdout and "-> replace it" in out.stdout
    assert "pip uninstall -y paddlepaddle-gpu" in out.stdout
    assert "pip install 'paddlepaddle>=3.0,<4'" in out.stdout


def test_real_run_keeps_gpu_build_and_sets_up_once(tmp_path):
    """Not a dry run: a GPU Paddle 3.x and up-to-date requirements -> nothing is installed
    (the venv has no pip, so any install would fail), and the second call does not even
    import Paddle again (stamp)."""
    venv = tmp_path / "gpu"
    _py, site = make_env(venv, "paddlepaddle-gpu", "3.3.1", "12.6")
    sha = subprocess.run(["sha256sum", os.path.join(ROOT, "requirements.txt")], capture_output=True,
                         text=True, check=True).stdout.split()[0]
    (venv / ".requirements.sha").write_text(sha + "\n")
    log = os.path.join(site, "paddle", "imports.log")

    first = run_setup(venv)  # PADDLE unset: the default (cpu) must not replace the GPU build
    assert first.returncode == 0, first.stdout + first.stderr
    assert "GPU build, CUDA 12.6" in first.stdout and "-> keep it" in first.stdout
    stamp = json.loads((venv / ".paddle.stamp").read_text())
    assert stamp["dists"] == ["paddlepaddle-gpu==3.3.1"] and stamp["cuda"] == "12.6"
    imports = open(log).read().count("import")

    second = run_setup(venv)
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""  # quiet when nothing changed
    assert open(log).read().count("import") == imports

    # a different Paddle appearing (e.g. installed by hand) is looked at again
    os.rename(os.path.join(site, "paddlepaddle_gpu-3.3.1.dist-info"),
              os.path.join(site, "paddlepaddle_gpu-3.3.2.dist-info"))
    with open(os.path.join(site, "paddlepaddle_gpu-3.3.2.dist-info", "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: paddlepaddle-gpu\nVersion: 3.3.2\n")
    third = run_setup(venv)
    assert third.returncode == 0, third.stderr
    assert "-> keep it" in third.stdout and open(log).read().count("import") == imports + 1


def test_bad_switch_is_one_line_error(tmp_path):
    out = run_setup(tmp_path / "x", PADDLE="cu120", DRY_RUN="1")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "PADDLE" in out.stderr and "cu129" in out.stderr
    out = run_setup(tmp_path / "x", "--bogus")
    assert out.returncode == 2 and "--dry-run" in out.stderr


def test_ci_installs_what_it_needs():
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert "bash tools/setup_env.sh" in ci and "bash tools/test.sh" in ci
