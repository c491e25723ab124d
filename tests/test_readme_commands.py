"""Every command the README (and the configs READMEs) shows must exist and answer --help.

The demo exercises the commands end to end; this test catches a README that names a script
or a flag that is not there.
"""
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "configs/depth_hints/README.md", "configs/monodepthv2/README.md"]


def _code_lines():
    """Command lines inside ``` blocks, with backslash continuations joined."""
    lines = []
    for doc in DOCS:
        text = open(os.path.join(ROOT, doc)).read()
        for block in re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S):
            block = block.replace("\\\n", " ")
            for line in block.splitlines():
                line = line.split(" #")[0].strip()
                if line and not line.startswith("#"):
                    lines.append((doc, line))
    return lines


def _python_invocations():
    found = {}
    for doc, line in _code_lines():
        for m in re.finditer(r"(?:^|\s)(?:\.venv/bin/)?python3? (?:-m paddle\.distributed\.launch \S+ \S+ )?(\S+\.py)(.*)", line):
            script, rest = m.group(1), m.group(2)
            flags = set(re.findall(r"(?<!\S)(--[a-z_]+)", rest.split("|")[0]))
            found.setdefault(script, set()).update(flags)
    return found


def _bash_scripts():
    scripts = set()
    for _doc, line in _code_lines():
        for m in re.finditer(r"bash (\S+\.sh)(?:\s+(\w+))?", line):
            scripts.add((m.group(1), m.group(2)))
    return sorted(scripts, key=str)


PY = _python_invocations()


def test_readme_opens_with_the_two_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    cmds = [l.split("#")[0].strip() for l in first_block.splitlines() if l.strip()]
    assert cmds == ["bash configs/depth_hints/depth_hints.sh demo", "bash tools/test.sh"]
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert "bash tools/test.sh" in ci


def test_readme_names_scripts():
    # the README must mention the main scripts at all (guards the regex above)
    for s in ["train.py", "evaluate_depth.py", "precompute_depth_hints.py", "export_gt_depth.py",
              "test_simple.py", "evaluate_pose.py", "export_model.py", "tools/convert_torch_weights.py"]:
        assert s in PY, s


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(PY))
def test_python_command_help_and_flags(script):
    path = os.path.join(ROOT, script)
    assert os.path.isfile(path), "README names %s, which does not exist" % script
    out = subprocess.run([sys.executable, path, "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    missing = [f for f in sorted(PY[script]) if f not in out.stdout]
    assert not missing, "%s --help lacks flags the README uses: %s" % (script, missing)


@pytest.mark.parametrize("script,sub", _bash_scripts())
def test_bash_command_exists_and_helps(script, sub):
    path = os.path.join(ROOT, script)
    assert os.path.isfile(path), "README names %s, which does not exist" % script
    if script.endswith("depth_hints.sh") or script.endswith("monodepthv2.sh"):
        out = subprocess.run(["bash", path, "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        if sub:
            assert sub in out.stdout, "%s has no sub-command %s" % (script, sub)
