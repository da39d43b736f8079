"""The layout: each folder of harness/ is one stage and imports only the stages below it, no
module imports itself back through another (no import cycle), and no module runs past 500 lines
without saying why. Read from the source (ast): no import is run, and an import inside a function
or under `if TYPE_CHECKING:` counts like any other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "servers")
# Bottom to top: a module may import its own stage and the stages of a lower rank only.
STAGES = {
    "servers": 0,  # the reference servers: nothing of harness
    "harness": 0,  # the package itself: its version
    "harness.core": 1,
    "harness.wire": 2,
    "harness.lab": 3,
    "harness.defender": 4,
    "harness.attackers": 4,  # beside the defender: neither imports the other
    "harness.results": 5,
    "harness.trials": 6,
    "harness.cli": 7,
    "harness.pytest_plugin": 7,
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


def stage(module: str) -> str:
    return max((s for s in STAGES if module == s or module.startswith(s + ".")), key=len)


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
    assert "harness.lab.hosts" in edges["harness.lab.topology"]
    assert "harness.results.run_directory" in edges["harness.results.report.render"]
    assert "harness.lab.topology" in edges["harness.lab"]  # under TYPE_CHECKING
    assert "harness.trials.runner" in edges["harness.cli.commands"]  # inside a function


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
    assert all(stage(module) for module in modules())
    assert set(STAGES) <= set(modules())


def test_long_modules_say_why():
    unexplained = []
    for module, path in modules().items():
        lines = len(path.read_text().splitlines())
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and REASON not in docstring:
            unexplained.append(f"{module}: {lines} lines")
    assert unexplained == []


def test_every_path_the_readme_names_exists():
    """The README's prose and module map point readers at files: a moved module must not leave
    them pointing at nothing."""
    readme = (ROOT / "README.md").read_text()
    # tests/ is left out: the CI snippet for other projects names their tests, not ours.
    named = set(re.findall(r"\b((?:harness|servers)/[\w./-]*\w)", readme))
    assert "harness/core/outcomes.py" in named
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []
