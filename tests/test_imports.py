"""The repository's modules import each other without cycles (every import counts, also
the ones inside functions), so each module can be read and tested on its own; test modules
import no other module of tests/ (their shared helpers are conftest.py's fixtures)."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".venv", "tests", ".git", "__pycache__", "splits", "weights", "docs", "configs"}


def repo_modules():
    """{module name: path} of every .py file of the project (tests excluded)."""
    mods = {}
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".")]
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                mods[".".join(rel)] = os.path.join(folder, f)
    return mods


def import_graph():
    mods = repo_modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(open(path).read(), path)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".") if package else []
                    parts = parts[:len(parts) - (node.level - 1)]
                    base = ".".join(p for p in parts + ([base] if base else []) if p)
                names = [base] + ["{}.{}".format(base, a.name) for a in node.names]
            for name in names:
                # the longest repo module that the imported name starts with
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    graph[mod].add(name)
    return graph


def find_cycle(graph):
    state = {}
    stack = []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_cycle_finder():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    graph = import_graph()
    assert {"trainer", "losses", "layers", "checkpoint", "options", "datasets", "networks"} <= set(graph)
    assert "layers" in graph["losses"] and "cpu_kernels" in graph["layers"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_options_only_parses():
    """options.py needs no other module of the toolkit but utils (its error type) and camera
    (which checks --intrinsics; no Paddle)."""
    assert import_graph()["options"] <= {"utils", "camera"}
    assert import_graph()["camera"] <= {"utils"}


# test_bench_published.py unit-tests bench/published_precompute.py itself; test_precompute.py
# reads images and true depth through bench/hint_accuracy.py.
PENDING = {"test_precompute.py": {"bench"}, "test_bench_published.py": {"bench"}}


def test_modules_imported(tmp_path):
    (tmp_path / "a.py").write_text("import os, helpers\nfrom bench import x\ndef f():\n    from tests.t import y\n")
    assert imported_tops(str(tmp_path / "a.py")) == {"os", "helpers", "bench", "tests"}


def imported_tops(path):
    """Top-level names of every module ``path`` imports (inside functions too)."""
    tops = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            tops.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            tops.add(node.module.split(".")[0])
    return tops


def test_tests_import_no_test_module():
    """Test modules share helpers through conftest.py's fixtures, never by importing another
    module of tests/ (or bench/, whose scripts the tests run as a user would)."""
    tests_dir = os.path.join(ROOT, "tests")
    own = {f[:-3] for f in os.listdir(tests_dir) if f.endswith(".py")} | {"tests", "bench"}
    found = {}
    for f in sorted(os.listdir(tests_dir)):
        if f.endswith(".py") and f != "conftest.py":
            bad = (imported_tops(os.path.join(tests_dir, f)) & own) - PENDING.get(f, set())
            if bad:
                found[f] = sorted(bad)
    assert not found, found
