"""`bash tools/test.sh tests/test_x.py` runs only that file; with no path it runs tests/."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "test.sh"), *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, PYTEST_ADDOPTS="-p no:cacheprovider"))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r.stdout


def test_a_test_file_runs_only_that_file():
    out = run("tests/test_progress.py")
    assert re.search(r"^3 passed", out, re.M), out[-2000:]
    out = run("tests/test_progress.py::test_format_duration", "tests/test_cpu_kernels.py", "-k", "format_duration")
    assert re.search(r"^1 passed, \d+ deselected", out, re.M), out[-2000:]


def test_no_path_means_the_whole_suite():
    out = run("--collect-only", "-k", "format_duration or cycle_finder")
    assert "tests/test_progress.py::test_format_duration" in out and "tests/test_imports.py::test_cycle_finder" in out
