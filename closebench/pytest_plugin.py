"""pytest fixtures for testing your own server's abuse handling with closebench.

Installed with closebench (entry point `pytest11: closebench`), so any test can ask for:

    def test_my_server_stays_silent(closebench_probe):
        result = closebench_probe(["my-server", "--port", "8080"], timeout=2)
        assert result.attempt.outcome == "silent"

    def test_my_server_under_attack(closebench_attack):
        closebench_attack(["my-server"], expect={"outcome": "silent", "peak_fds_max": 50})

- `closebench_lab`: a Lab (attacker and defender hosts), removed after the test;
- `closebench_probe(server, ..., expect=None)`: one abusive request, returns the ProbeResult;
- `closebench_attack(server, ..., expect=None)`: a short attack trial, returns the TrialResult.

`expect` is a table of `closebench check` expectations (a dict: `{"outcome": "fin"}`) or an
expectations file (its tables naming the trial, its strategy, or "*"); an expectation that fails
fails the test with what was expected, what was measured, the wire timeline of an attempt that
did not meet it and the path of the attacker-side pcap (kept in the test's tmp_path). A bare
`assert result.attempt.outcome == "silent"` that fails shows the same timeline and pcap.

`server` is a strategy of the reference server (`"repair"`, `"tarpit:interval=5"`) or your own
command as a list of strings, run inside the lab's defender host. Labs need root (or
CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN): without them the fixtures skip the test, or fail
it when the CI environment variable is set, so a misconfigured CI cannot pass by skipping.

Heavy modules are imported inside the fixtures: this plugin loads in every pytest session of an
environment where closebench is installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from closebench.core.outcomes import Attempt
    from closebench.defender import ServerConfig
    from closebench.lab import Lab
    from closebench.trials.probe import ProbeResult
    from closebench.trials.trial import TrialResult

Server = str | Sequence[str]  # a strategy spec, or a command
ExpectGiven = str | os.PathLike | Mapping[str, object]  # a table, or an expectations file
Expect = ExpectGiven | None

# What the last probe or attack of this test saw, for a bare assertion's explanation:
# (the attempt, its wire timeline, the pcap's path).
_last_seen: list[tuple[Attempt, list, str | None]] = []


def require_lab() -> None:
    """Skip (or, in CI, fail) a test that cannot build network namespaces here."""
    from closebench.lab.privileges import CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN, has_capability

    if all(has_capability(bit) for bit in (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN)):
        return
    reason = (
        "closebench labs need CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN: run pytest as root "
        "(sudo) or under `unshare -Urnm`"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def server_config(server: Server, port: int) -> ServerConfig:
    """A strategy spec string, or a command (list of strings) listening on `port`."""
    from closebench.defender import ServerConfig
    from closebench.servers.strategies import parse_spec

    if isinstance(server, str):
        try:
            return ServerConfig(port, parse_spec(server))
        except ValueError as error:
            raise pytest.UsageError(
                f"closebench: {error} (give your own server as a list: ['my-server', '--port', "
                f"'{port}'])"
            ) from None
    if not server or not all(isinstance(part, str) for part in server):
        raise pytest.UsageError("closebench: a server command is a non-empty list of strings")
    return ServerConfig(port, command=list(server))


@pytest.fixture
def closebench_lab() -> Iterator[Lab]:
    """An attacker host and a defender host joined by a veth pair; gone after the test."""
    require_lab()
    from closebench.lab import Lab

    with Lab() as lab:
        yield lab


@pytest.fixture
def closebench_probe(tmp_path: Path) -> Callable[..., ProbeResult]:
    """probe(server, *, port=8080, timeout=3, path="/spam", request_delay=0, routed=False,
    family=4, listen_timeout=10, expect=None) -> ProbeResult, in a lab of its own per call.

    `result.attempt.outcome` is the outcome class ("silent", "fin", "rst"...), from the
    attacker-side capture; `result.timeline` is every packet of the connection.
    """
    require_lab()

    def probe(
        server: Server,
        *,
        port: int = 8080,
        timeout: float = 3.0,
        path: str = "/spam",
        request_delay: float = 0.0,
        routed: bool = False,
        family: int = 4,
        listen_timeout: float = 10.0,
        expect: Expect = None,
    ) -> ProbeResult:
        from closebench.trials.probe import Probe, ProbeCase

        case = ProbeCase(server_config(server, port), routed, family, request_delay)
        pcaps = tmp_path / "closebench-pcaps"
        pcaps.mkdir(exist_ok=True)
        result = Probe(timeout, path, str(pcaps), listen_timeout=listen_timeout).run(case)
        if result.error or result.attempt is None:
            pytest.fail(f"closebench probe of {case.label} could not run: {result.error}")
        _last_seen[:] = [(result.attempt, result.timeline, result.pcap)]
        if expect is not None:
            row = _probe_row(case.label, result)
            strategy = str(case.server.spec) if case.server.spec else None
            _expect(expect, row, strategy, [result.attempt], result.pcap)
        return result

    return probe


@pytest.fixture
def closebench_attack(tmp_path: Path) -> Callable[..., TrialResult]:
    """attack(server, *, attacker="kernel", duration=3, timeout=2, concurrency=1, rate=None,
    attempts=None, reconnect=True, request_delay=0, path="/spam", port=8080, legit_rate=2,
    routed=False, family=4, sample_hz=10, label=None, expect=None) -> TrialResult, in a lab of
    its own per call; the attacker-side pcap is kept in tmp_path.

    `result.summaries[attacker]` has attempts, attempts_per_s, hang_*_s and outcomes (counts by
    class); `result.legit` the legitimate client's success; `result.defender` the server's costs.
    """
    require_lab()

    def attack(
        server: Server,
        *,
        attacker: str = "kernel",
        duration: float = 3.0,
        timeout: float = 2.0,
        concurrency: int = 1,
        rate: float | None = None,
        attempts: int | None = None,
        reconnect: bool = True,
        request_delay: float = 0.0,
        path: str = "/spam",
        port: int = 8080,
        legit_rate: float = 2.0,
        routed: bool = False,
        family: int = 4,
        sample_hz: float | None = 10.0,
        label: str | None = None,
        expect: Expect = None,
    ) -> TrialResult:
        from closebench.attackers.policy import Policy
        from closebench.core.errors import ClosebenchError
        from closebench.core.file_names import unique_names
        from closebench.trials.trial import AttackerSpec, LegitClient, TrialConfig, run_trial

        try:
            policy = Policy(
                timeout=timeout,
                reconnect=reconnect,
                concurrency=concurrency,
                rate=rate,
                duration=duration,
                attempts=attempts,
                request_delay=request_delay,
            )
            config = TrialConfig(
                server=server_config(server, port),
                attackers=(AttackerSpec(attacker, policy, path),),
                legit=LegitClient(rate=legit_rate) if legit_rate > 0 else None,
                family=family,
                routed=routed,
                sample_hz=sample_hz,
                label=label,
            )
            pcaps = tmp_path / "closebench-pcaps"
            pcaps.mkdir(exist_ok=True)
            config = replace(config, pcap=str(pcaps / unique_names([config.name], ".pcap")[0]))
            result = run_trial(config)
        except ClosebenchError as error:
            pytest.fail(f"closebench attack could not run: {error}")
        if result.attempts:
            first = result.attempts[0]
            _last_seen[:] = [(first, _timeline(first, config.pcap), config.pcap)]
        if expect is not None:
            from closebench.trials.rows import strategy_name, trial_row

            row = trial_row(config, result).to_dict()
            _expect(expect, row, strategy_name(config), result.attempts, config.pcap)
        return result

    return attack


def _probe_row(trial: str, result: ProbeResult) -> dict:
    """A probe as a summary row: its one attempt's outcome and hang."""
    attempt = result.attempt
    return {
        "trial": trial,
        "complete": True,
        "error": None,
        "attempts": 1,
        "outcomes": {attempt.outcome.value: 1} if attempt else {},
        "hang_median_s": attempt.hang_s if attempt else None,
        "hang_max_s": attempt.hang_s if attempt else None,
    }


def _expect(
    expect: ExpectGiven, row: dict, strategy: str | None, attempts, pcap: str | None
) -> None:
    """Fail the test, with the evidence, when the row does not meet `expect`."""
    from closebench.core.errors import UsageError
    from closebench.results.check import check_row

    try:
        tables = _tables(expect, row["trial"], strategy)
        verdicts = [verdict for table in tables for verdict in check_row(row, table)]
    except UsageError as error:
        raise pytest.UsageError(f"closebench: {error}") from None
    failed = [verdict for verdict in verdicts if not verdict.ok]
    if not failed:
        return
    trial = row["trial"]
    lines = [f"closebench: {len(failed)} of {len(verdicts)} expectations failed for {trial!r}"]
    lines += [f"  {v.figure}: expected {v.expected}; measured {v.actual}" for v in failed]
    wanted = {t.outcome for t in tables if t.outcome} | {
        o for t in tables for o in (t.outcomes_only or [])
    }
    shown = next((a for a in attempts if wanted and a.outcome.value not in wanted), None)
    shown = shown or (attempts[0] if attempts else None)
    if shown is not None:
        lines += explain_attempt(shown, _timeline(shown, pcap), pcap)
    elif pcap:
        lines.append(f"pcap: {pcap} (no attempt)")
    pytest.fail("\n".join(lines), pytrace=False)


def _tables(expect: ExpectGiven, trial: str, strategy: str | None) -> list:
    """The expectation tables about this trial: `expect` itself, or a file's matching tables."""
    from closebench.results.check import ALL_TRIALS, load_expectations, parse_expectations

    if isinstance(expect, Mapping):
        return parse_expectations({trial: dict(expect)}, Path("expect")).tables
    expectations = load_expectations(Path(expect))
    names = {trial, ALL_TRIALS} | ({strategy, strategy.split(":")[0]} if strategy else set())
    tables = [table for table in expectations.tables if table.name in names]
    if not tables:
        raise pytest.UsageError(
            f"closebench: {expect} has no table for the trial {trial!r}: name it "
            f'[{trial!r}]{" or its strategy" if strategy else ""}, or use ["*"]'
        )
    return tables


def _timeline(attempt: Attempt, pcap: str | None) -> list:
    """The attempt's packets as the attacker's host saw them (empty without a pcap)."""
    from closebench.wire.pcap import Endpoint, connection_events

    if not pcap or not os.path.exists(pcap) or not attempt.sport:
        return []
    client, server = Endpoint(attempt.src, attempt.sport), Endpoint(attempt.dst, attempt.dport)
    return connection_events(pcap, client, server)


def explain_attempt(attempt: Attempt, timeline: list, pcap: str | None) -> list[str]:
    """An attempt in plain lines: who, its outcome, every packet of its connection, the pcap."""
    hang = f"{attempt.hang_s:.3f} s" if attempt.hang_s is not None else "unknown"
    lines = [
        f"attempt {attempt.src}:{attempt.sport} -> {attempt.dst}:{attempt.dport}: outcome "
        f"{attempt.outcome.value}, the client waited {hang}",
        "wire timeline (attacker side):" if timeline else "wire timeline: none captured",
    ]
    start = timeline[0].t if timeline else 0.0
    for event in timeline:
        arrow = "->" if event.direction == "out" else "<-"
        again = " (retransmission)" if event.retransmission else ""
        size = f" {event.length} B" if event.length else ""
        lines.append(f"  +{event.t - start:7.3f} s {arrow} {event.what}{size}{again}")
    lines.append(f"pcap: {pcap}" if pcap else "pcap: none kept")
    return lines


def pytest_assertrepr_compare(config, op: str, left: object, right: object) -> list[str] | None:
    """`assert result.attempt.outcome == "silent"` failing: show what the wire saw."""
    from closebench.core.outcomes import Outcome

    if op != "==" or not (isinstance(left, Outcome) or isinstance(right, Outcome)):
        return None
    if not _last_seen:
        return None
    attempt, timeline, pcap = _last_seen[0]
    got = left.value if isinstance(left, Outcome) else left
    wanted = right.value if isinstance(right, Outcome) else right
    return [f"outcome {got!r} == {wanted!r}", *explain_attempt(attempt, timeline, pcap)]
