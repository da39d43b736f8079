"""The report of a run: figures, index.html and summary.md, built from a stored small real run
(tests/data/, the seed's spammer shortened, pcaps dropped) and checked in a headless browser."""

from __future__ import annotations

import base64
import contextlib
import csv
import json
import os
import select
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from closebench.attackers.chromium import BROWSER_ENV, find_browser
from closebench.core.errors import UsageError
from closebench.results.figures import FIGURES
from closebench.results.report import build_report

RUN = Path(__file__).parent / "data" / "20261129-215532-report-sample"
ROOT = Path(__file__).resolve().parent.parent

# The figures of a run that is not a sweep (a sweep's: tests/test_sweep.py).
RUN_FIGURES = [figure for figure in FIGURES if not figure.name.startswith("sweep_")]


def closebench(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "closebench.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A copy of the stored run, its report built by `closebench report` as a user would."""
    directory = tmp_path_factory.mktemp("run") / RUN.name
    shutil.copytree(RUN, directory)
    result = closebench("report", str(directory))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"report: {directory / 'index.html'}"
    return directory


class Tables(HTMLParser):
    """The cells of every table row, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.images: list[dict[str, str | None]] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def parse(html: str) -> Tables:
    tables = Tables()
    tables.feed(html)
    return tables


def expected_cells(row: dict) -> dict[str, str]:
    """summary.json figures as the table shows them, under their column's header, formatted
    here independently."""
    cells = {
        "attempts": str(row["attempts"]),
        "attempts/s": f"{row['attempts_per_s']:.2f}",
        "hang median (s)": f"{row['hang_median_s']:.3f}",
        "hang p95 (s)": f"{row['hang_p95_s']:.3f}",
        "connect wait median (s)": f"{row['connect_wait_median_s']:.3f}",
        "slot median (s)": f"{row['slot_median_s']:.3f}",
        "outcomes": ", ".join(f"{k} {v}" for k, v in row["outcomes"].items()),
        "seconds wasted": f"{row['attacker_seconds_wasted']:.1f}",
        "answered": f"{100 * row['legit_success_rate']:.1f}%",
        "latency median (ms)": f"{1000 * row['legit_latency_median_s']:.1f}",
        "peak fds": str(row["peak_fds"]),
        "fd-s": f"{row['fd_seconds']:.1f}",
        "CPU s": f"{row['cpu_seconds']:.2f}",
        "peak threads": str(row["peak_threads"]),
        "peak RSS (MiB)": f"{row['peak_rss_mb']:.1f}",
        "peak orphans": str(row["peak_orphans"]),
        "retransmits": str(row["retransmissions"]),
    }
    ratio = row["wasted_per_fd_second"]
    cells["wasted s per fd-s"] = "no fd held" if ratio is None else f"{ratio:.2f}"
    return cells


def by_column(rows: list[list[str]], trial: str) -> dict[str, str]:
    """A trial's cells keyed by their column's header, over every table whose header row starts
    with "trial" (the HTML splits the summary table in two)."""
    found: dict[str, str] = {}
    header: list[str] | None = None
    for cells in rows:
        if cells and cells[0] == "trial":
            header = cells
        elif header and cells and cells[0] == trial and len(cells) == len(header):
            found.update(zip(header[1:], cells[1:], strict=True))
    return found


def split(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_report_leaves_a_stored_runs_summary_as_it_was(built):
    """`closebench report` on a run made before the rename (summary/1, harness's days) reads it
    and writes its pages beside it: summary.json stays byte for byte what the run wrote."""
    assert (built / "summary.json").read_bytes() == (RUN / "summary.json").read_bytes()
    assert json.loads((RUN / "summary.json").read_text())["schema"] == "closebench.summary/1"


def test_every_figure_exists_as_png_and_svg(built):
    for figure in FIGURES:
        if figure not in RUN_FIGURES:
            assert not (built / "figures" / f"{figure.name}.png").exists()
            continue
        png, svg = (
            built / "figures" / f"{figure.name}.png",
            built / "figures" / f"{figure.name}.svg",
        )
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert png.stat().st_size > 20_000, f"{png} looks empty"
        assert b"<svg" in svg.read_bytes()[:2000] and svg.stat().st_size > 20_000, svg


def test_html_holds_every_summary_figure(built):
    summary = json.loads((built / "summary.json").read_text())
    html = (built / "index.html").read_text()
    rows = parse(html).rows
    for row in summary["rows"]:
        cells = by_column(rows, row["trial"])
        assert cells, f"no table row for {row['trial']}"
        for header, text in expected_cells(row).items():
            assert cells.get(header) == text, f"{row['trial']}: {header}: {cells.get(header)!r}"
    assert summary["meta"]["run_id"] in html and summary["meta"]["kernel"] in html


def test_summary_markdown_has_the_same_table(built):
    summary = json.loads((built / "summary.json").read_text())
    lines = (built / "summary.md").read_text().splitlines()
    for row in summary["rows"]:
        [header] = [line for line in lines if line.startswith("| trial |")]
        [line] = [line for line in lines if line.startswith(f"| {row['trial']} |")]
        cells = by_column([split(header), split(line)], row["trial"])
        for header_text, text in expected_cells(row).items():
            assert cells.get(header_text) == text, f"summary.md: {row['trial']}: {header_text}"


def test_html_is_self_contained(built):
    html = (built / "index.html").read_text()
    page = parse(html)
    assert len(page.images) == len(RUN_FIGURES)
    for image in page.images:
        assert (image["src"] or "").startswith("data:image/svg+xml;base64,"), image["alt"]
    assert "script" not in page.tags and "link" not in page.tags
    assert "http://" not in html and "https://" not in html
    # The raw files are linked, relatively.
    raw = ("summary.json", "attempts/graceful.parquet", "samples.csv", "scenario.toml", "run.log")
    for name in raw:
        assert f'href="{name}"' in html


def test_reading_is_derived_from_the_numbers(built):
    html = (built / "index.html").read_text()
    summary = json.loads((built / "summary.json").read_text())
    rows = {row["trial"]: row for row in summary["rows"]}
    slowest = min(row["attempts_per_s"] for row in rows.values())
    assert f"Slowest attacker ({slowest:.2f}/s)" in html
    assert "TCP_REPAIR needs CAP_NET_ADMIN" in html
    # The routed ttl-drop's orphans are named; so is the FIN that arrives without a router.
    assert rows["ttl-drop (via router)"]["peak_orphans"] > 0
    assert "orphan-seconds" in html and "with no router hop" in html


def test_every_second_the_attacker_spent_is_read(built):
    html = " ".join((built / "index.html").read_text().split())
    summary = json.loads((built / "summary.json").read_text())
    fw_drop = next(row for row in summary["rows"] if row["trial"] == "fw-drop")
    # Dropped SYNs: the spammer sat out its timeout in connect(), and that time counts.
    assert fw_drop["outcomes"].get("syn-timeout") == fw_drop["connect_waits"] > 0
    assert fw_drop["attacker_seconds_wasted"] >= 4 * fw_drop["connect_waits"] * 0.9
    waits = fw_drop["connect_waits"]
    assert f"{waits} of them sent no request, and count their wait to connect" in html
    assert f"{fw_drop['attacker_seconds_wasted']:.1f} s wasted in all" in html


@pytest.mark.parametrize("state", ["agree", "disagree", "not verified"])
def test_the_wire_check_is_on_the_page(tmp_path, monkeypatch, state):
    # What the page and summary.md say of the wire check does not depend on the figures (the
    # `built` fixture draws them, for the tests that read them): 20 s less per state on 2 cores.
    monkeypatch.setattr("closebench.results.report.render.render_all", lambda run, out: [])
    directory = tmp_path / "run"
    shutil.copytree(RUN, directory)
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["wire_agreement"]["ok"]  # the stored run was verified when it was made
    if state == "disagree":
        summary["wire_agreement"].update(ok=False, class_mismatches=1)
        summary["rows"][2]["wire_agreement"].update(ok=False, class_mismatches=1)
    elif state == "not verified":
        summary["wire_agreement"] = None
    (directory / "summary.json").write_text(json.dumps(summary))
    files = build_report(directory)
    html = " ".join(files.html.read_text().split())
    markdown = files.markdown.read_text()
    if state == "agree":
        assert "records agree with the wire" in html and "every class agrees" in html
        assert "- records agree with the wire (closebench verify)" in markdown
    elif state == "disagree":
        assert "The attempt records disagree with the packet captures" in html
        assert "1 class mismatch(es)" in html and "FLAGGED" in html
        assert "**records DISAGREE with the wire**" in markdown
        assert f"  - {summary['rows'][2]['trial']}: " in markdown
    else:
        assert "Not verified: this run was made with <code>--no-verify</code>" in html
        assert "wire" not in markdown


def test_incomplete_run_with_failed_trial_and_hostile_names(tmp_path):
    directory = tmp_path / "run"
    shutil.copytree(RUN, directory)
    summary = json.loads((directory / "summary.json").read_text())
    summary["complete"] = False
    hostile = "<script>alert('x')</script> | *bold*"
    old = summary["rows"][0]["trial"]
    summary["rows"][0]["trial"] = hostile
    failed = summary["rows"][1]
    for key in ("peak_fds", "fd_seconds", "cpu_seconds", "hang_median_s", "legit_success_rate"):
        failed[key] = None
    failed.update(error="server did not listen <in time>", complete=False, outcomes={})
    (directory / "summary.json").write_text(json.dumps(summary))
    # The failed trial has no samples; an attempts file was cut short by a killed run.
    with (directory / "samples.csv").open() as stream:
        samples = [r for r in csv.DictReader(stream) if r["trial"] != failed["trial"]]
    with (directory / "samples.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(samples[0]))
        writer.writeheader()
        writer.writerows(samples)
    renamed = directory / "attempts" / f"{old}.parquet"
    table = pq.read_table(renamed)
    pq.write_table(table.set_column(0, "trial", pa.array([hostile] * len(table))), renamed)
    cut = directory / "attempts" / "rst.parquet"
    cut.write_bytes(cut.read_bytes()[:-200])

    files = build_report(directory)
    html = files.html.read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert "incomplete" in html
    assert "server did not listen &lt;in time&gt;" in html
    assert "attempts/rst.parquet is not a readable Parquet file (" in html
    assert "per-attempt figures are left out" in html
    markdown = files.markdown.read_text()
    assert "<script>" not in markdown and r"\<script\>" in markdown and r"\|" in markdown
    for figure in files.figures:
        assert figure.png.stat().st_size > 10_000 and figure.svg.stat().st_size > 10_000


def test_run_with_nothing_measured(tmp_path):
    """Interrupted before any trial ran: only summary.json, every row an error."""
    summary = json.loads((RUN / "summary.json").read_text())
    summary["complete"] = False
    summary["rows"] = [
        {
            "trial": row["trial"],
            "strategy": row["strategy"],
            "routed": row["routed"],
            "complete": False,
            "error": "not run: the run was interrupted",
            "duration_s": None,
        }
        for row in summary["rows"][:3]
    ]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    files = build_report(tmp_path)
    html = files.html.read_text()
    assert html.count("not run: the run was interrupted") >= 3
    assert "samples.csv is missing" in html and "scenario.toml was not recorded" in html
    assert len(files.figures) == len(RUN_FIGURES)
    assert all(f.png.stat().st_size > 0 and f.svg.stat().st_size > 0 for f in files.figures)


@pytest.mark.parametrize("make", ["missing", "empty dir", "not a summary"])
def test_bad_run_dir_is_one_clear_error(tmp_path, make):
    directory = tmp_path / "nothing"
    if make != "missing":
        directory.mkdir()
    if make == "not a summary":
        (directory / "summary.json").write_text('{"schema": "something/1"}')
    with pytest.raises(UsageError, match="is not a closebench run directory"):
        build_report(directory)
    result = closebench("report", str(directory)) if make == "empty dir" else None
    if result:
        assert result.returncode == 2
        [line] = result.stderr.strip().splitlines()
        assert "not a closebench run directory (no summary.json)" in line


# the page in a real browser


def find_chromium() -> str:
    found = find_browser()
    if found:
        return found
    reason = (
        "no Chrome or Chromium runs here (Debian: apt-get install chromium, or ./setup.sh; "
        f"elsewhere install Google Chrome, or name a browser in ${BROWSER_ENV})"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fds 3 and 4, messages ending
    in NUL): no websocket client needed."""

    def __init__(self, chromium: str, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._events, events_write = os.pipe()

        def child_fds() -> None:  # chromium reads commands on fd 3 and writes on fd 4
            os.dup2(commands_read, 3)
            os.dup2(events_write, 4)

        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "--window-size=1280,1000",
        ]
        self.process = subprocess.Popen(
            [chromium, *flags, "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=child_fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(events_write)
        self._buffer = b""
        self._next = 0
        self.events: list[dict] = []
        self.session: str | None = None

    def call(self, method: str, timeout: float = 20, **params) -> dict:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        reply = self.wait(lambda m: m.get("id") == self._next, timeout)
        assert "error" not in reply, (method, reply["error"])
        return reply["result"]

    def wait(self, matches, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if matches(message):
                    return message
                self.events.append(message)
            left = deadline - time.monotonic()
            assert left > 0, "chromium did not answer in time"
            ready, _, _ = select.select([self._events], [], [], left)
            if ready:
                chunk = os.read(self._events, 1 << 20)
                assert chunk, "chromium closed the DevTools pipe"
                self._buffer += chunk

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._commands)
        os.close(self._events)


def test_page_renders_in_headless_chromium(built, tmp_path):
    browser = DevTools(find_chromium(), tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        attached = browser.call("Target.attachToTarget", targetId=target, flatten=True)
        browser.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable")
        browser.call("Page.navigate", url=(built / "index.html").as_uri())
        browser.wait(lambda m: m.get("method") == "Page.loadEventFired")
        images = browser.call(
            "Runtime.evaluate",
            expression="[...document.images].map(i => [i.alt, i.complete, i.naturalWidth])",
            returnByValue=True,
        )["result"]["value"]
        size = browser.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = browser.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": size["height"], "scale": 1},
        )
    finally:
        browser.close()
    assert [alt for alt, _, _ in images] == [f.title for f in RUN_FIGURES]
    assert all(complete and width > 500 for _, complete, width in images), images
    errors = [
        e
        for e in browser.events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert not errors, errors
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot of the report page: {screenshot}")  # kept with pytest's tmp directories
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.width == 1280 and image.height > 5000, image.size
        # A blank or broken page has a handful of colours; figures and text have thousands.
        assert image.convert("RGB").getcolors(maxcolors=500) is None


def test_closebench_run_writes_the_report(tmp_path):
    """The runner builds the report at the end of every run, also of one stopped at once."""
    from closebench.trials.runner import Runner
    from closebench.trials.scenario import load_scenario

    path = RUN / "scenario.toml"
    scenario, text, digest = load_scenario(path)
    runner = Runner(scenario, text, digest, path, tmp_path)
    runner.cancel.set()  # Ctrl-C before any trial started: no lab is built
    outcome = runner.run()
    assert not outcome.complete
    assert outcome.report == outcome.directory / "index.html" and outcome.report.is_file()
    assert (outcome.directory / "summary.md").is_file()
    assert "report: index.html" in (outcome.directory / "run.log").read_text()
