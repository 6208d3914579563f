"""The shape of the code: no import cycle between edgeroute's modules, and no module over 450 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import edgeroute

ROOT = Path(edgeroute.__file__).parent
MAX_LINES = 450


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules imported when ``name`` is imported: module-level statements only (not inside functions, not under
    ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    if full in known:
                        found.add(full)
                    elif target in known:
                        found.add(target)

    visit(tree.body)
    found.discard(name)
    return found


def test_no_module_imports_itself_through_others():
    mods = modules()
    graph = {name: top_level_imports(name, path, set(mods)) for name, path in mods.items()}
    # a package's __init__ importing its own submodules is how packages work; an edge back into a package's
    # __init__ from its submodule is the cycle that breaks imports
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):
                continue  # package -> its own submodule
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_no_module_is_over_450_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_router_is_the_thin_api_and_the_pipeline_its_own_package():
    from edgeroute import pipeline, router

    assert len(Path(router.__file__).read_text().splitlines()) < 250
    steps = sorted(p.stem for p in Path(pipeline.__file__).parent.glob("*.py"))
    assert steps == ["__init__", "cloud", "local", "record", "run", "work"]


def test_the_readme_is_short_and_its_links_resolve():
    import re

    root = ROOT.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    broken = [(p.name, link) for p in pages for link in re.findall(r"\]\(([^)#]+)\)", p.read_text(encoding="utf-8"))
              if not link.startswith("http") and not (p.parent / link).exists()]
    assert broken == []


def test_every_package_ships_in_the_wheel():
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    root = ROOT.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "edgeroute").rglob("__init__.py")}
    assert found - {"edgeroute._models"} <= listed, sorted(found - listed)
