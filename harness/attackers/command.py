"""Real clients as the attacker: curl, or any command the user gives.

Each run of the command is one attempt. What it did on the wire comes from a capture on the
attacker host, classified like everything else; the command's own exit status, error text and
elapsed time go in the record's detail, so users see what a real client makes of each strategy.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from harness.attackers.policy import Budget, Policy, Target
from harness.capture import Capture, Endpoint, classify, connections
from harness.lab import Lab
from harness.outcomes import Attempt, Outcome

# Placeholders: {url} {address} {port} {path} {timeout} {source}
CURL = [
    "curl",
    "-sS",
    "-o",
    "/dev/null",
    "--interface",
    "{source}",
    "--max-time",
    "{timeout}",
    "{url}",
]
GRACE = 5.0  # seconds past the timeout before a command that ignores it is killed
SETTLE = 0.1  # seconds for the last packets of a run to reach the capture file


@dataclass(frozen=True)
class Run:
    """One run of the command: when, and what it said."""

    started: float
    ended: float
    status: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        said = self.stderr.strip().splitlines()[-1:] or [self.stdout.strip()]
        return f"exit {self.status} after {self.ended - self.started:.2f} s: {said[0]}"[:300]


class CommandClient:
    name = "command"

    def __init__(self, argv: list[str] | None = None, label: str | None = None) -> None:
        self.argv = argv or CURL
        self.label = label or os.path.basename(self.argv[0])

    def run(
        self,
        lab: Lab,
        target: Target,
        policy: Policy,
        sink: Callable[[Attempt], None],
        cancel: threading.Event,
        source: str | None = None,
    ) -> dict:
        source = source or lab.attacker_ip(target.family)
        server = Endpoint(target.address, target.port)
        budget = Budget(policy)
        lock = threading.Lock()
        claimed: set[tuple[Endpoint, float]] = set()
        runs: list[Run] = []
        with tempfile.TemporaryDirectory(prefix="closebench-command-") as scratch:
            pcap = os.path.join(scratch, "attacker.pcap")
            capture = Capture(
                lab.attacker, "eth0", f"tcp port {target.port} or icmp or icmp6", pcap
            )
            try:

                def slot() -> None:
                    while budget.take_blocking(cancel):
                        run = self._run_once(lab, target, policy, source, cancel)
                        time.sleep(SETTLE)
                        with lock:
                            runs.append(run)
                            attempt = self._attempt(pcap, server, run, source, policy, claimed)
                        sink(attempt)
                        if not policy.reconnect:
                            return

                with ThreadPoolExecutor(policy.concurrency) as pool:
                    for future in [pool.submit(slot) for _ in range(policy.concurrency)]:
                        future.result()
            finally:
                capture.stop()
        failed = sum(run.status != 0 for run in runs)
        return {"runs": len(runs), "runs_failed": failed}

    def _argv(self, target: Target, policy: Policy, source: str) -> list[str]:
        host = f"[{target.address}]" if target.family == 6 else target.address
        values = {
            "url": f"http://{host}:{target.port}{target.path}",
            "address": target.address,
            "port": str(target.port),
            "path": target.path,
            "timeout": f"{policy.timeout:g}",
            "source": source,
        }
        # Plain replacement, not str.format: a user's command may hold braces of its own.
        argv = []
        for part in self.argv:
            for name, value in values.items():
                part = part.replace("{" + name + "}", value)
            argv.append(part)
        return argv

    def _run_once(self, lab, target, policy, source, cancel) -> Run:
        started = time.time()
        process = lab.attacker.spawn(
            self._argv(target, policy, source),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=policy.timeout + GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            stderr += f"\n(killed: still running {GRACE:g} s past the {policy.timeout:g} s timeout)"
        return Run(started, time.time(), process.returncode, stdout, stderr)

    def _attempt(self, pcap, server, run: Run, source, policy, claimed: set) -> Attempt:
        """The run's first connection in the capture, classified; the command's words in detail."""
        attempt = Attempt(
            attacker=self.label,
            family=6 if ":" in server.address else 4,
            src=source,
            sport=0,
            dst=server.address,
            dport=server.port,
            client_timeout=policy.timeout,
            outcome=Outcome.SYN_TIMEOUT,
            t_syn=run.started,
            t_end=run.ended,
            detail=run.describe(),
        )
        for client, events in connections(pcap, server):
            first = events[0]
            key = (client, first.t)
            # Its own connection starts with its SYN: another attacker on the same address may
            # have connected before this run's capture began.
            mine = client.address == source and run.started <= first.t <= run.ended
            mine = mine and first.direction == "out" and first.what == "S"
            if key in claimed or not mine:
                continue
            claimed.add(key)
            attempt.src, attempt.sport = client.address, client.port
            classify(events, attempt)
            if attempt.outcome in (Outcome.SILENT, Outcome.SYN_TIMEOUT):
                attempt.t_end = run.ended  # the command's own timeout ended it
            break
        else:
            attempt.detail += " (no connection seen on the wire)"
        return attempt
