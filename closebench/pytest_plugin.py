"""pytest fixtures for testing your own server's abuse handling with closebench.

Installed with closebench (entry point `pytest11: closebench`), so any test can ask for:

    def test_my_server_stays_silent(closebench_probe):
        result = closebench_probe(["my-server", "--port", "8080"], timeout=2)
        assert result.attempt.outcome == "silent"

- `closebench_lab`: a Lab (attacker and defender hosts), removed after the test;
- `closebench_probe(server, ...)`: one abusive request, returns the ProbeResult;
- `closebench_attack(server, ...)`: a short attack trial, returns the TrialResult.

`server` is a strategy of the reference server (`"repair"`, `"tarpit:interval=5"`) or your own
command as a list of strings, run inside the lab's defender host. Labs need root (or
CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN): without them the fixtures skip the test, or fail
it when the CI environment variable is set, so a misconfigured CI cannot pass by skipping.

Heavy modules are imported inside the fixtures: this plugin loads in every pytest session of an
environment where closebench is installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from closebench.defender import ServerConfig
    from closebench.lab import Lab
    from closebench.trials.probe import ProbeResult
    from closebench.trials.trial import TrialResult

Server = str | Sequence[str]  # a strategy spec, or a command


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
def closebench_probe() -> Callable[..., ProbeResult]:
    """probe(server, *, port=8080, timeout=3, path="/spam", request_delay=0, routed=False,
    family=4, listen_timeout=10) -> ProbeResult, in a lab of its own per call.

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
    ) -> ProbeResult:
        from closebench.trials.probe import Probe, ProbeCase

        case = ProbeCase(server_config(server, port), routed, family, request_delay)
        result = Probe(timeout, path, listen_timeout=listen_timeout).run(case)
        if result.error or result.attempt is None:
            pytest.fail(f"closebench probe of {case.label} could not run: {result.error}")
        return result

    return probe


@pytest.fixture
def closebench_attack() -> Callable[..., TrialResult]:
    """attack(server, *, attacker="kernel", duration=3, timeout=2, concurrency=1, rate=None,
    attempts=None, reconnect=True, request_delay=0, path="/spam", port=8080, legit_rate=2,
    routed=False, family=4, sample_hz=10) -> TrialResult, in a lab of its own per call.

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
    ) -> TrialResult:
        from closebench.attackers.policy import Policy
        from closebench.core.errors import ClosebenchError
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
            )
            return run_trial(config)
        except ClosebenchError as error:
            pytest.fail(f"closebench attack could not run: {error}")

    return attack
