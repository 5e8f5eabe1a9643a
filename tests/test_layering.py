"""Imports point inward and no package cycle exists (docs/ARCHITECTURE.md, "The rule").

Every module of ``src/tapshield`` is parsed with :mod:`ast`, never imported, so
an import inside a function, under ``TYPE_CHECKING`` or through
``importlib.import_module("tapshield...")`` counts like one at the top. A
top-level module (``money.py``) is a package of its own. Each package's layer
(core, domain, edge) is read from the package map in docs/ARCHITECTURE.md, so
the map and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tapshield"

RESERVED_EDGES = frozenset({"app", "stream", "console"})
"""Edge packages other work is creating; classified before they land so a
merge that adds one is checked at once (each also has a row in the map)."""

@dataclass(frozen=True, slots=True)
class Import:
    source: str
    target: str
    where: str

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.where})"


def _module_name(path: Path, src: Path) -> tuple[str, list[str]]:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), parts
    return ".".join(parts), parts[:-1]


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "tapshield" or len(parts) < 2:
        return None
    return parts[1]


def _targets(node: ast.AST, package_parts: list[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = package_parts[: len(package_parts) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        # ``from tapshield import detect`` imports the package ``detect``
        return [module] + [f"{module}.{a.name}" for a in node.names if module == "tapshield"]
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return [arg.value.split(":")[0]]
    return []


def package_imports(src: Path = SRC) -> list[Import]:
    """Every import of one tapshield package by another, with file and line."""
    out: list[Import] = []
    known = packages(src)
    for path in sorted(src.rglob("*.py")):
        module, package_parts = _module_name(path, src)
        source = _package(module)
        if source is None:
            continue
        tree = ast.parse(path.read_bytes(), filename=str(path))
        for node in ast.walk(tree):
            for target in _targets(node, package_parts):
                dest = _package(target)
                if dest in known and dest != source:
                    where = f"{path.relative_to(src.parent)}:{getattr(node, 'lineno', 0)}"
                    out.append(Import(source, dest, where))
    return out


def packages(src: Path = SRC) -> set[str]:
    names = {p.name for p in src.iterdir() if p.is_dir() and any(p.rglob("*.py"))}
    names |= {p.stem for p in src.glob("*.py") if p.stem != "__init__"}
    return names


def layers_from_map() -> dict[str, str]:
    """``package -> layer`` from the package map table of docs/ARCHITECTURE.md."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## Package map", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[1] not in ("core", "domain", "edge"):
            continue
        for name in re.findall(r"`([^`]+)`", cells[0]):
            layers[name.removeprefix("tapshield.")] = cells[1]
    return layers


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _violations(imports: list[Import], layers: dict[str, str]) -> list[str]:
    bad: list[str] = []
    for imp in imports:
        # a package missing from the map is checked as domain (and reported by
        # test_every_package_is_on_the_map)
        src_layer = layers.get(imp.source, "domain")
        dst_layer = layers.get(imp.target, "domain")
        if src_layer == "core" and dst_layer != "core":
            bad.append(f"core imports {dst_layer}: {imp}")
        elif src_layer == "domain" and dst_layer == "edge":
            bad.append(f"domain imports edge: {imp}")
        elif imp.source == "detect" and dst_layer != "core":
            bad.append(f"the generic detector imports beyond the core: {imp}")
    return bad


def test_every_package_is_on_the_map() -> None:
    layers = layers_from_map()
    missing = sorted(packages() - set(layers) - RESERVED_EDGES)
    assert not missing, (
        f"packages without a row (and a layer) in docs/ARCHITECTURE.md's package map: {missing}")
    stale = sorted(set(layers) - packages() - RESERVED_EDGES - {"__main__"})
    assert not stale, f"the package map lists packages that do not exist: {stale}"


def test_imports_point_inward_and_form_no_cycle() -> None:
    layers = {**dict.fromkeys(RESERVED_EDGES, "edge"), **layers_from_map()}
    imports = package_imports()
    assert imports, "the parser found no import at all"
    # No exception list: every import is checked.
    problems = _violations(imports, layers)
    for comp in cycles({(i.source, i.target) for i in imports}):
        inside = [str(i) for i in imports if i.source in comp and i.target in comp]
        problems.append(f"import cycle between {comp}: " + "; ".join(inside))
    assert not problems, "\n".join(problems)


def test_the_checker_sees_what_it_must(tmp_path: Path) -> None:
    """A cycle through a function-level and a TYPE_CHECKING import, a domain
    package importing an edge one by ``importlib``, and a relative import, all caught."""
    pkg = tmp_path / "tapshield"
    for name in ("a", "b", "c"):
        (pkg / name).mkdir(parents=True)
        (pkg / name / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("def f():\n    from tapshield.b import y\n")
    (pkg / "b" / "y.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\n")
    (pkg / "c" / "z.py").write_text(
        "import importlib\nm = importlib.import_module('tapshield.b.y')\n")
    imports = package_imports(pkg)
    pairs = {(i.source, i.target) for i in imports}
    assert pairs == {("a", "b"), ("b", "a"), ("c", "b")}
    assert cycles(pairs) == [["a", "b"]]
    layers = {"a": "domain", "b": "edge", "c": "core"}
    found = _violations(imports, layers)
    assert any(v.startswith("domain imports edge: a -> b") for v in found)
    assert any(v.startswith("core imports edge: c -> b") for v in found)


def test_importing_the_generic_detector_loads_no_payment_code() -> None:
    code = (
        "import sys, tapshield.detect, tapshield.detect.run, tapshield.detect.series, "
        "tapshield.detect.nab, tapshield.detect.events\n"
        "from pathlib import Path\n"
        "import tempfile\n"
        "d = tempfile.mkdtemp()\n"
        "p = Path(d) / 's.csv'\n"
        "p.write_text('timestamp,value\\n2026-01-01T00:00:00Z,1\\n2026-01-01T00:01:00Z,2\\n')\n"
        "tapshield.detect.series.read_series(p)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('tapshield'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    layers = layers_from_map()
    loaded = {m.split(".")[1] for m in out if m.count(".") >= 1}
    beyond = sorted(p for p in loaded if p != "detect" and layers.get(p) != "core")
    assert not beyond, f"importing and running tapshield.detect loaded {beyond}"
    assert "detect" in loaded
