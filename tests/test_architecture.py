"""The layering rules of docs/architecture.md, checked on the source (so a change that breaks one fails).

* no import cycle among the package's modules, function-local imports included;
* no module reaches into another object's ``_private`` names (only ``self``/``cls``);
* only the storage seam (``storage.py``, ``_lock.py``) opens, lists or changes a store's files;
  the command line and the test helpers, which handle user paths, are outside the rule;
* no file is longer than the size a reader can hold in mind.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "imgstore"
#: modules allowed to call the file system directly
FILE_SYSTEM_OWNERS = {"storage.py", "_lock.py"}
#: folders outside the rule: the command line and the test helpers handle user paths, not a
#: store's files; the codec layer (backends/pyav) works on the local file the storage hands out
#: (``Storage.local_path``) and FFmpeg opens it itself
OUTSIDE_THE_RULE = {"cli", "testing", "backends/pyav"}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    tree = ast.parse(path.read_text())
    type_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base) if node.level else (node.module or "")
            for alias in node.names:
                name = f"{target}.{alias.name}"
                found.add(name if name in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != module}


def test_no_import_cycle():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for dep in sorted(graph[module]):
            if seen.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in seen:
                visit(dep, [*path, dep])
        seen[module] = 2

    for module in sorted(graph):
        if module not in seen:
            visit(module, [module])


def test_no_module_touches_another_objects_privates():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, "\n".join(offenders)


_FILE_CALLS = {("os", n) for n in ("open", "listdir", "scandir", "stat", "unlink", "remove", "rename", "replace",
                                   "makedirs", "mkdir", "rmdir", "walk", "fsync", "ftruncate", "access")}
_FILE_CALLS |= {("os.path", n) for n in ("exists", "isdir", "isfile", "getsize", "getmtime")}
_FILE_CALLS |= {("shutil", n) for n in ("rmtree", "move", "copyfile", "copy")}
_FILE_CALLS |= {("np", n) for n in ("fromfile", "memmap")} | {("os", "pread"), ("mmap", "mmap")}


def test_only_the_storage_seam_touches_files():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.name in FILE_SYSTEM_OWNERS or any(str(rel).startswith(f + "/") for f in OUTSIDE_THE_RULE):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                offenders.append(f"{rel}:{node.lineno}: open(...)")
            elif isinstance(func, ast.Attribute) and (ast.unparse(func.value), func.attr) in _FILE_CALLS:
                offenders.append(f"{rel}:{node.lineno}: {ast.unparse(func)}(...)")
    allowed = {"index.py: open"}
    left = [o for o in offenders if not any(o.startswith(a.split(":")[0]) and a.split(": ")[1] in o for a in allowed)]
    assert not left, "\n".join(left)


def test_no_file_is_too_long():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*") if p.suffix in (".py", ".js", ".html", ".css")
            and (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
