"""The docs: the site builds strictly (every internal link and anchor resolves) with no network, its
reference pages are written from the code and cover all of it, and the README stays a short read
that explains every column of the run table and every outcome class. No lab, no root."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from closebench.attackers.packet.engine import TRANSITIONS, Event, State
from closebench.cli.tables import RUN_COLUMNS
from closebench.core.outcomes import Outcome
from closebench.results.report.columns import COLUMN_BY_KEY
from closebench.servers import strategies

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _reference_pages():
    spec = importlib.util.spec_from_file_location("reference_pages", DOCS / "reference_pages.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference_pages = _reference_pages()


def _mkdocs_or_skip() -> None:
    if importlib.util.find_spec("mkdocs") and importlib.util.find_spec("material"):
        return
    message = "mkdocs-material is not installed: pip install -e '.[docs]' (./setup.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    """mkdocs build --strict, with any attempt to reach the network sent to a closed port."""
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "DISABLE_MKDOCS_2_WARNING": "true",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    return subprocess.run(
        [*command, "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_site_builds_strictly_offline(tmp_path):
    _mkdocs_or_skip()
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    pages = {p.relative_to(tmp_path / "site").as_posix() for p in tmp_path.rglob("index.html")}
    for generated in reference_pages.PAGES:
        assert generated.removesuffix(".md") + "/index.html" in pages
    assert "index.html" in pages  # the README, as the home page
    diagram = (tmp_path / "site/reference/engine-states/index.html").read_text()
    assert "stateDiagram-v2" in diagram


def _small_site(tmp_path: Path, link: str) -> Path:
    """A two-page site with the project's settings (validation included), a.md linking `link`."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text(f"# A\n\nSee [b]({link}).\n")
    (docs / "b.md").write_text("# B\n\n## A real heading\n\nText.\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(
        f"INHERIT: {ROOT / 'mkdocs.yml'}\ndocs_dir: {docs}\nplugins: [search]\nnav: [a.md, b.md]\n"
    )
    return config


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        ("b.md#a-real-heading", None),
        ("b.md#no-such-heading", "does not contain an anchor"),
    ],
)
def test_the_build_fails_on_a_broken_link_or_anchor(tmp_path, link, problem):
    _mkdocs_or_skip()
    result = _build(_small_site(tmp_path, link), tmp_path / "site")
    if problem is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert problem in result.stderr


def test_every_flag_strategy_option_figure_and_key_has_a_description():
    assert reference_pages.missing_descriptions() == []
    assert reference_pages.undescribed_modules() == []


def test_a_missing_description_is_caught(monkeypatch):
    """Both ways: a strategy option and a command-line flag with no description are named."""
    graceful = strategies.STRATEGIES["graceful"]
    bare = dataclasses.replace(graceful.options[0], help="")
    monkeypatch.setitem(
        strategies.STRATEGIES, "graceful", dataclasses.replace(graceful, options=(bare,))
    )
    build = reference_pages.build_parser

    def parser_with_a_bare_flag():
        parser = build()
        for name, sub in reference_pages.subcommands(parser):
            if name == "run":
                sub.add_argument("--undescribed")
        return parser

    monkeypatch.setattr(reference_pages, "build_parser", parser_with_a_bare_flag)
    missing = reference_pages.missing_descriptions()
    assert "option `graceful:read_first`" in missing
    assert "`closebench run --undescribed UNDESCRIBED`" in missing


def test_the_engine_page_has_every_transition():
    page = reference_pages.PAGES["reference/engine-states.md"]()
    rows = {tuple(cell.strip() for cell in line.split("|")[1:6]) for line in page.splitlines()}
    for (state, event), (action, after, outcome) in TRANSITIONS.items():
        ends = outcome.value if outcome else ""
        assert (state.name, event.name, f"`{action.__name__}`", after.name, ends) in rows


def test_an_engine_word_without_a_description_is_caught(monkeypatch):
    action = TRANSITIONS[State.REQUESTED, Event.TIMEOUT].action
    monkeypatch.setattr(action, "__doc__", None)
    assert f"engine action {action.__name__}" in reference_pages.missing_descriptions()


def test_generated_pages_are_in_the_nav_and_not_committed():
    nav = (ROOT / "mkdocs.yml").read_text()
    for path in [*reference_pages.PAGES, "index.md", "changelog.md"]:
        assert f": {path}" in nav, f"{path} is not in mkdocs.yml's nav"
        assert not (DOCS / path).exists(), f"docs/{path} is generated: it must not be committed"


def test_the_readme_is_a_short_read():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert len(text.split()) <= 2000


def test_the_readme_explains_every_column_and_outcome():
    text = README.read_text()
    header = next(line for line in text.splitlines() if line.startswith("strategy "))
    columns = re.split(r"\s{2,}", header.strip())
    # The sample is the table `closebench run` prints today: its headers come from the code.
    assert columns == ["strategy"] + [COLUMN_BY_KEY[key].header for key in RUN_COLUMNS]
    for column in columns:
        assert f"| `{column}` |" in text, f"the run table's legend lacks {column!r}"
    for outcome in Outcome:
        assert f"| `{outcome.value}` |" in text, f"the README lacks the outcome {outcome.value}"


def test_the_readme_links_resolve():
    """Its links into docs/ name a page there or one the build writes."""
    generated = set(reference_pages.PAGES)
    for target in re.findall(r"\]\((?!https?:)([^)#]+)", README.read_text()):
        if target.startswith("docs/"):
            page = target.removeprefix("docs/")
            assert (DOCS / page).exists() or page in generated, target
        else:
            assert (ROOT / target).exists(), target
