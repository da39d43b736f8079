"""`closebench attack`: one attacker against one strategy (or any server command) in a lab."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.attackers import make_attacker
from harness.attackers.policy import Policy, Target
from harness.defender import Defender, ServerConfig
from harness.lab import Lab
from harness.outcomes import Attempt
from harness.sockets import tcp_sockets
from harness.summary import AttackSummary, LegitSummary, summarize, summarize_legit

SAMPLE_EVERY = 0.2  # seconds between looks at the attacker host's kernel sockets


@dataclass(frozen=True)
class LegitClient:
    """A steady, low-rate client asking for `/` from its own address."""

    rate: float = 2.0
    timeout: float = 5.0


@dataclass(frozen=True)
class AttackConfig:
    server: ServerConfig
    attacker: str = "kernel"
    attacker_command: list[str] | None = None
    policy: Policy = field(default_factory=Policy)
    path: str = "/spam"
    family: int = 4
    routed: bool = False
    legit: LegitClient | None = None


@dataclass
class AttackResult:
    config: AttackConfig
    summary: AttackSummary
    attempts: list[Attempt]
    legit: LegitSummary | None
    legit_attempts: list[Attempt]
    server_stats: dict
    complete: bool  # False when interrupted

    def to_dict(self) -> dict:
        return {
            "strategy": str(self.config.server.spec) if self.config.server.spec else None,
            "command": self.config.server.command or None,
            "attacker": self.config.attacker,
            "policy": self.config.policy.__dict__,
            "family": self.config.family,
            "routed": self.config.routed,
            "complete": self.complete,
            "summary": self.summary.to_dict(),
            "legit": self.legit.to_dict() if self.legit else None,
            "server_stats": self.server_stats,
        }


class AttackerHostSampler:
    """Peaks of the attacker host's kernel sockets: what the attack costs the attacker's kernel."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.peak_sockets = 0
        self.peak_by_state: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            counts: dict[str, int] = {}
            for entry in tcp_sockets(self.lab.attacker):
                counts[entry.state] = counts.get(entry.state, 0) + 1
            self.peak_sockets = max(self.peak_sockets, sum(counts.values()))
            for state, count in counts.items():
                self.peak_by_state[state] = max(self.peak_by_state.get(state, 0), count)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"peak_kernel_sockets": self.peak_sockets, "peak_by_state": self.peak_by_state}


def run_attack(
    config: AttackConfig,
    cancel: threading.Event | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> AttackResult:
    """Build a lab, start the server, run the attacker (and a legitimate client) until done."""
    cancel = cancel or threading.Event()
    attempts: list[Attempt] = []
    legit_attempts: list[Attempt] = []

    def sink(attempt: Attempt) -> None:
        attempts.append(attempt)
        if on_attempt:
            on_attempt(attempt)

    with Lab(routed=config.routed) as lab:
        if config.legit:
            lab.add_attacker_addresses(1)
        defender = Defender(lab, config.server)
        legit_stop = threading.Event()
        try:
            target = Target(
                lab.defender_ip(config.family), config.server.port, config.family, config.path
            )
            attacker = make_attacker(config.attacker, config.attacker_command)
            legit_thread = _start_legit(lab, config, legit_attempts, legit_stop)
            sampler = AttackerHostSampler(lab)
            started = time.monotonic()
            cost: dict = {}
            try:
                cost = attacker.run(lab, target, config.policy, sink, cancel)
            finally:
                elapsed = time.monotonic() - started
                cost.update(sampler.stop())
                legit_stop.set()
                if legit_thread:
                    legit_thread.join()
        finally:
            server_stats = defender.stop()
            defender.close()
    return AttackResult(
        config=config,
        summary=summarize(config.attacker, attempts, elapsed, cost),
        attempts=attempts,
        legit=summarize_legit(legit_attempts) if config.legit else None,
        legit_attempts=legit_attempts,
        server_stats=server_stats,
        complete=not cancel.is_set(),
    )


def _start_legit(lab, config: AttackConfig, records: list, stop) -> threading.Thread | None:
    if not config.legit:
        return None
    from harness.attackers.kernel import KernelSpammer

    target = Target(lab.defender_ip(config.family), config.server.port, config.family, "/")
    # Bounded like every loop: it stops with the attack, or by itself after a day at most.
    policy = Policy(timeout=config.legit.timeout, rate=config.legit.rate, duration=86400)
    source = lab.addressing.attacker_extra(config.family, 0)
    thread = threading.Thread(
        target=KernelSpammer("legit").run,
        args=(lab, target, policy, records.append, stop, source),
        daemon=True,
    )
    thread.start()
    return thread
