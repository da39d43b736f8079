"""An attack on a server outside the lab: `closebench attack --target HOST:PORT --engine locust`.

No lab: the master and the local workers run on this machine as they are (in its own network), and
die with closebench (PR_SET_PDEATHSIG); more workers may join from other machines
(`closebench locust-worker --master HOST:PORT`). Only the attacker side is measured: the run
directory has the attempts and their summary, and `closebench report RUN --samples DIR` merges
what `closebench sample` recorded on the server's machine.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from closebench.attackers.locust.swarm import LocustEngine, Placement
from closebench.attackers.policy import Target
from closebench.core.errors import UsageError
from closebench.core.outcomes import Attempt
from closebench.core.summary import summarize
from closebench.lab import netns, stop_processes
from closebench.trials.trial import TrialConfig, TrialResult

REMOTE_JOIN_TIMEOUT = 300.0  # seconds other machines' workers have to connect


class ThisMachine:
    """This machine as the place of the engine's processes, in closebench's own namespaces."""

    role = "this machine"

    def __init__(self) -> None:
        self._spawned: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], **popen_kwargs) -> subprocess.Popen:
        popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
        process = subprocess.Popen(argv, preexec_fn=netns.die_with_parent, **popen_kwargs)
        self._spawned.append(process)
        return process

    def stop_spawned(self) -> None:
        stop_processes(self._spawned)
        self._spawned.clear()


def resolve(host: str, port: int, ipv6: bool, path: str) -> Target:
    """The target's address (a name is resolved once, here), as an attack Target."""
    family = socket.AF_INET6 if ipv6 else socket.AF_UNSPEC
    try:
        found = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UsageError(f"--target {host}:{port}: cannot resolve {host!r} ({error})") from None
    address_family, *_, address = found[0]
    return Target(str(address[0]), port, 6 if address_family == socket.AF_INET6 else 4, path)


def check_bindable(bind: tuple[str, int]) -> None:
    """UsageError (exit 2) now, rather than a failed master later, when `bind` is taken."""
    host, port = bind
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
    except OSError as error:
        raise UsageError(
            f"--master-bind {host}:{port}: cannot listen there ({error.strerror}): "
            "give another address or port"
        ) from None


def free_local_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class TargetAttack:
    """One attacker spec of `config` run by Locust against `target`, placed by `placement`."""

    target: Target
    placement: Placement
    csv_prefix: str | None = None

    def run(self, config: TrialConfig, cancel: threading.Event, on_attempt) -> TrialResult:
        [spec] = config.attackers
        attempts: list[Attempt] = []

        def sink(attempt: Attempt) -> None:
            attempt.attacker = spec.name
            attempts.append(attempt)
            on_attempt(attempt)

        engine = LocustEngine(spec.name)
        try:
            engine.prepare(self.placement, self.target, spec.policy, cancel, self.csv_prefix)
            started = time.monotonic()
            cost = engine.run(None, self.target, spec.policy, sink, cancel)
            duration = time.monotonic() - started
        finally:
            engine.close()
            for place in {id(p): p for p in [self.placement.master, *self._places()]}.values():
                place.stop_spawned()
        return TrialResult(
            config=config,
            attempts=attempts,
            legit_attempts=[],
            summaries={spec.name: summarize(spec.name, attempts, duration, cost)},
            legit=None,
            samples=[],
            defender=None,
            sampler_overhead=None,
            server_stats={},
            server_log="",
            duration_s=duration,
            complete=not cancel.is_set(),
        )

    def _places(self) -> list:
        return [place for place, _ in self.placement.workers]
