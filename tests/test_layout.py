"""The layout: each folder of closebench/ is one stage and imports only the stages below it, no
module imports itself back through another (no import cycle), and no module runs past 500 lines
without saying why. Read from the source (ast): no import is run, and an import inside a function
or under `if TYPE_CHECKING:` counts like any other."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("closebench",)
# Bottom to top: a module may import its own stage and the stages of a lower rank only.
STAGES = {
    "closebench.servers": 0,  # the reference servers: nothing else of closebench
    "closebench": 0,  # the package itself (its __init__ only): its version
    "closebench.deprecated_names": 0,  # the old import names, for one release
    "closebench.core": 1,
    "closebench.wire": 2,
    "closebench.lab": 3,
    "closebench.defender": 4,
    "closebench.attackers": 4,  # beside the defender: neither imports the other
    "closebench.results": 5,
    "closebench.trials": 6,
    "closebench.cli": 7,
    "closebench.pytest_plugin": 7,
}
MAX_LINES = 500
REASON = "over 500 lines"  # what a longer module's docstring says, with why


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of this code base that `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from package import module` imports the module; `from module import name` the module
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in known)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def stage(module: str) -> str | None:
    """The stage a module belongs to: the longest stage name it is or is inside of (the package
    root counts only for itself), None for a module outside every stage."""
    matches = [
        s for s in STAGES if module == s or (s != "closebench" and module.startswith(s + "."))
    ]
    return max(matches, key=len, default=None)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_is_read():
    edges = graph()
    # A sample of edges the code base has: the walk sees lazy and TYPE_CHECKING imports too.
    assert "closebench.lab.hosts" in edges["closebench.lab.topology"]
    assert "closebench.results.run_directory" in edges["closebench.results.report.render"]
    assert "closebench.lab.topology" in edges["closebench.lab"]  # under TYPE_CHECKING
    assert "closebench.trials.runner" in edges["closebench.cli.commands"]  # inside a function


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_cycles():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def test_every_stage_imports_only_stages_below_it():
    wrong = []
    for module, targets in graph().items():
        for target in targets:
            here, there = stage(module), stage(target)
            if here != there and STAGES[there] >= STAGES[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    assert wrong == []


def test_every_module_belongs_to_a_stage():
    assert [module for module in modules() if stage(module) is None] == []
    assert set(STAGES) <= set(modules())
    assert stage("closebench.nowhere") is None  # a new top-level module needs a stage


def test_no_two_modules_share_a_file_name():
    """A name says what a module is: `records.py` twice makes a reader ask which."""
    names: dict[str, list[str]] = {}
    for module, path in modules().items():
        if path.name not in ("__init__.py", "__main__.py"):
            names.setdefault(path.name, []).append(module)
    assert {name: found for name, found in names.items() if len(found) > 1} == {}


def test_long_modules_say_why():
    unexplained = []
    for module, path in modules().items():
        lines = len(path.read_text().splitlines())
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and REASON not in docstring:
            unexplained.append(f"{module}: {lines} lines")
    assert unexplained == []


def map_lines(path: Path) -> list[str]:
    """The lines of a package docstring that list one of its own modules, as a module map does
    ("    engine.py   the TCP state machine")."""
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    own = {p.name for p in path.parent.iterdir() if p.suffix == ".py"}
    own |= {f"{p.name}/" for p in path.parent.iterdir() if p.is_dir()}
    # A map's row: a module's name set apart as a column (indented, or two spaces after it);
    # prose that wraps onto a line starting with a module's name is no map.
    row = re.compile(r"(\s+(\S+)\s|(\S+)\s{2,})")
    found = [(line, row.match(line)) for line in docstring.splitlines()]
    return [line for line, m in found if m and (m.group(2) or m.group(3)) in own]


def test_package_docstrings_leave_the_module_map_to_the_docs_site():
    """One module map: the docs site's, written from each module's docstring
    (docs/reference_pages.py). A package says what it is, not what its modules are."""
    packages = [path for path in modules().values() if path.name == "__init__.py"]
    maps = {str(path.relative_to(ROOT)): map_lines(path) for path in packages}
    assert {name: lines for name, lines in maps.items() if lines} == {}


def test_a_module_map_in_a_package_docstring_is_found(tmp_path):
    (tmp_path / "engine.py").write_text('"""The engine."""\n')
    (tmp_path / "peers").mkdir()
    init = tmp_path / "__init__.py"
    init.write_text('"""A package.\n\n    engine.py  the engine\npeers/  the peers\n"""\n')
    assert map_lines(init) == ["    engine.py  the engine", "peers/  the peers"]
    init.write_text('"""A package: its engine is\nengine.py (and its timers) at its heart."""\n')
    assert map_lines(init) == []


def test_every_path_the_readme_names_exists():
    """The README's and the docs' prose point readers at files: a moved module must not leave
    them pointing at nothing."""
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
    # tests/ is left out: the CI snippet for other projects names their tests, not ours.
    named = {
        p for page in pages for p in re.findall(r"\b(closebench/[\w./-]*\w)", page.read_text())
    }
    assert "closebench/core/outcomes.py" in named
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []


def test_the_old_import_names_still_work_and_warn():
    """harness.* and servers.* (closebench 0.1) import the same module objects, with a warning."""
    code = (
        "import warnings; warnings.simplefilter('error', FutureWarning)\n"
        "try:\n    import harness.pytest_plugin\nexcept FutureWarning as w:\n    print(w)\n"
        "warnings.simplefilter('ignore')\n"
        "import harness.pytest_plugin, closebench.pytest_plugin, servers.strategies\n"
        "import closebench.servers.strategies as s\n"
        "print(harness.pytest_plugin is closebench.pytest_plugin, servers.strategies is s)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    warning, same = result.stdout.splitlines()
    assert "harness is now closebench" in warning and "CHANGELOG.md" in warning
    assert same == "True True"
    server = subprocess.run(
        [sys.executable, "-m", "servers.reference", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.returncode == 0 and "--strategy" in server.stdout
    assert "servers.reference is now closebench.servers.reference" in server.stderr
