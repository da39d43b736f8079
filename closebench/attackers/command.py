"""Real clients as the attacker: curl, a browser, or any command the user gives.

Each run of the command may open several connections (a retry, a spare one, a second request);
each connection towards the target is an attempt of its own, read from a capture on the attacker
host and classified like everything else. A connection belongs to the run that was going on, from
the run's source address, when its first SYN left. Every attempt names its run (`run`, numbered
from 1) and what the command made of it: exit status, duration and the error it printed.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from closebench.attackers.policy import Budget, Policy, Target
from closebench.core.addresses import canonical
from closebench.core.errors import UsageError
from closebench.core.outcomes import Attempt, ClosedBy, Outcome
from closebench.core.placeholders import fill
from closebench.lab import Lab
from closebench.lab.capture import Capture
from closebench.lab.confine import Confinement, prepare_directory
from closebench.wire.classify import classify
from closebench.wire.pcap import ConnectionBook, Endpoint, PcapFollower, WireEvent

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
GRACE = 5.0  # seconds past the timeout before a command that ignores it is stopped
STOP_GRACE = 2.0  # seconds a stopped command has to exit after SIGTERM before SIGKILL
SETTLE = 0.1  # seconds for the last packets of a run to reach the capture file
SHOWN_ERRORS = 3  # distinct lines kept of what runs without a connection said


@dataclass(frozen=True)
class Run:
    """One run of the command: when, and what it said."""

    number: int
    source: str
    started: float
    ended: float
    status: int
    stdout: str
    stderr: str
    error: str  # the line of its output that says what went wrong (or right)
    stopped_at: float | None = None  # when closebench stopped it (None: it exited by itself)

    def owns(self, client: Endpoint, events: list[WireEvent]) -> bool:
        # Its own connection starts with its SYN: another client on the same address may have
        # connected before the capture began.
        first = events[0] if events else None
        syn = first.t if first and first.direction == "out" and first.what == "S" else None
        mine = client.address == canonical(self.source)
        return mine and syn is not None and self.started <= syn <= self.ended


class CommandClient:
    name = "command"
    # A tool's run goes on until the attack ends (closebench stops it then); a command's is
    # bounded by closebench's timeout (policy.timeout + GRACE).
    runs_until_attack_ends = False
    run_in_scratch = False  # its working directory: the run's scratch (files it leaves go there)

    def __init__(
        self,
        argv: list[str] | None = None,
        label: str | None = None,
        confine: Confinement | None = None,
    ) -> None:
        self.argv = argv or CURL
        self.label = label or os.path.basename(self.argv[0])
        self.confine = confine  # a command from a scenario file runs confined (lab/confine.py)
        self._numbers = itertools.count(1)

    def run(
        self,
        lab: Lab,
        target: Target,
        policy: Policy,
        sink: Callable[[Attempt], None],
        cancel: threading.Event,
        source: str | list[str] | None = None,
    ) -> dict:
        """`source`: the address (or one per connection slot) its connections leave from."""
        sources = self._slot_sources(lab, target, policy, source)
        server = Endpoint(target.address, target.port)
        budget = Budget(policy)
        book = ConnectionBook(server)
        unclaimed: list[tuple[Endpoint, list[WireEvent]]] = []
        lock = threading.Lock()
        runs: list[Run] = []
        connected: set[int] = set()  # the runs that opened at least one connection
        with tempfile.TemporaryDirectory(prefix="closebench-command-") as scratch:
            pcap = os.path.join(scratch, "attacker.pcap")
            follower = PcapFollower(pcap)
            capture = Capture(
                lab.attacker, "eth0", f"tcp port {target.port} or icmp or icmp6", pcap
            )
            try:

                def slot(index: int) -> None:
                    while budget.take_blocking(cancel):
                        limit = policy.timeout + GRACE
                        if self.runs_until_attack_ends:
                            limit = budget.remaining()
                        run = self._run_once(lab, target, policy, sources[index], cancel, limit)
                        time.sleep(SETTLE)
                        with lock:
                            runs.append(run)
                            unclaimed.extend(book.read(follower))
                            # Copies: another slot's read may still add late packets to them.
                            mine = [(c, list(e)) for c, e in unclaimed if run.owns(c, e)]
                            unclaimed[:] = [(c, e) for c, e in unclaimed if not run.owns(c, e)]
                            if mine:
                                connected.add(run.number)
                        for client, events in mine:
                            sink(self._attempt(client, events, server, run, policy))
                        if not policy.reconnect:
                            return

                with ThreadPoolExecutor(policy.concurrency) as pool:
                    slots = [pool.submit(slot, i) for i in range(policy.concurrency)]
                    for future in slots:
                        future.result()
            finally:
                capture.stop()
        return self.cost(runs, connected)

    def cost(self, runs: list[Run], connected: set[int]) -> dict:
        """What the runs cost the attacker, from the runs themselves (its attacker_cost)."""
        silent = [run for run in runs if run.number not in connected]
        return {
            "runs": len(runs),
            "runs_failed": sum(run.status != 0 for run in runs),
            "runs_without_connection": len(silent),
            # What the runs that opened no connection said (no record carries it): the
            # commonest lines, each with its count.
            "errors_without_connection": dict(
                Counter(run.error or f"exit status {run.status}" for run in silent).most_common(
                    SHOWN_ERRORS
                )
            ),
        }

    def _slot_sources(self, lab: Lab, target: Target, policy: Policy, source) -> list[str]:
        """One address per connection slot, the runner's own (see AttackerSpec.binds_source):
        connections are told apart by their source address, so runs that overlap, and other
        clients, must leave from other ones."""
        given = [source] if isinstance(source, str) else list(source or [])
        if policy.concurrency == 1:
            return [given[0] if given else lab.attacker_ip(target.family)]
        if not any("{source}" in part for part in self.argv):
            raise UsageError(
                f"the {self.label} attacker runs one command at a time (concurrency 1): its "
                "connections are told apart by source address, and its command takes none "
                "(give it {source}, as curl --interface {source} does)"
            )
        if len(set(given)) < policy.concurrency:
            raise UsageError(
                f"the {self.label} attacker needs {policy.concurrency} source addresses for "
                f"concurrency {policy.concurrency}, got {len(set(given))}"
            )
        return given[: policy.concurrency]

    def _argv(self, target: Target, policy: Policy, source: str, scratch: str) -> list[str]:
        return fill(self.argv, self.values(target, policy, source, scratch))

    def values(self, target: Target, policy: Policy, source: str, scratch: str) -> dict[str, str]:
        """What each placeholder of its command stands for in this run."""
        host = f"[{target.address}]" if target.family == 6 else target.address
        return {
            "url": f"http://{host}:{target.port}{target.path}",
            "address": target.address,
            "port": str(target.port),
            "path": target.path,
            "timeout": f"{policy.timeout:g}",
            "timeout_ms": str(round(policy.timeout * 1000)),
            "source": source,
            "scratch": scratch,
        }

    def _run_once(
        self, lab, target, policy, source: str, cancel: threading.Event, limit: float
    ) -> Run:
        number = next(self._numbers)
        # A fresh empty directory per run ({scratch}): a browser's profile, say. Output goes to
        # files, not pipes: a child the command leaves behind cannot keep us reading.
        scratch = tempfile.mkdtemp(prefix=f"closebench-run{number}-")
        try:
            prepare_directory(scratch, self.confine)
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                started = time.time()
                argv = self._argv(target, policy, source, scratch)
                process = lab.attacker.spawn(
                    self.confine.wrap(argv) if self.confine else argv,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,  # its own children go with it when it is stopped
                    cwd=scratch if self.run_in_scratch else None,
                )
                note, stopped_at = _wait(process, limit, cancel)
                ended = time.time()
                stdout, stderr = _text(out), _text(err) + note
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        error = self.error_text(process.returncode, stdout, stderr)
        return Run(
            number, source, started, ended, process.returncode, stdout, stderr, error, stopped_at
        )

    def error_text(self, status: int, stdout: str, stderr: str) -> str:
        """What the command said of its run: its last line on stderr ("" if it said nothing)."""
        said = stderr.strip().splitlines()[-1:] or [""]
        return said[0][:300]

    def _attempt(self, client, events, server: Endpoint, run: Run, policy: Policy) -> Attempt:
        attempt = Attempt(
            attacker=self.label,
            family=6 if ":" in server.address else 4,
            src=client.address,
            sport=client.port,
            dst=server.address,
            dport=server.port,
            client_timeout=self.client_timeout(policy),
            outcome=Outcome.SYN_TIMEOUT,
            t_syn=events[0].t,
            # Until the wire says otherwise: a connection nothing ended ended with its command.
            t_end=run.ended,
            run=run.number,
            run_exit_status=run.status,
            run_duration_s=run.ended - run.started,
            run_error=run.error,
        )
        stopped_at = run.stopped_at
        classify(events, attempt, ClosedBy.CLIENT if stopped_at is None else ClosedBy.CLOSEBENCH)
        if (
            stopped_at is not None
            and attempt.closer is ClosedBy.CLIENT
            and (attempt.t_end or 0) >= stopped_at
        ):
            # The FIN or RST of a command closebench stopped: its kernel closing what it held.
            attempt.closed_by = ClosedBy.CLOSEBENCH.value
        return attempt

    def client_timeout(self, policy: Policy) -> float:
        """The command's own timeout when closebench gives it one ({timeout} or {timeout_ms} in
        its arguments); inf where it is the command's own, unknown: its early close is then its
        choice, never a give-up (core/outcomes.gave_up)."""
        told = any("{timeout}" in part or "{timeout_ms}" in part for part in self.argv)
        return policy.timeout if told else math.inf


def _wait(
    process: subprocess.Popen, limit: float, cancel: threading.Event
) -> tuple[str, float | None]:
    """Wait for the command to exit; stop it past `limit` seconds or on cancel, and say so (and
    when it was stopped)."""
    deadline = time.monotonic() + limit
    while True:
        try:
            process.wait(0.2)
            return "", None
        except subprocess.TimeoutExpired:
            pass
        if cancel.is_set() or time.monotonic() > deadline:
            stopped_at = time.time()
            _stop(process)
            if cancel.is_set():
                return "\n(stopped: the attack was cancelled)", stopped_at
            return f"\n(stopped: still running {limit:g} s after it started)", stopped_at


def _text(stream) -> str:
    stream.seek(0)
    return stream.read().decode(errors="replace")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the command's whole process group (its session, start_new_session): a tool's
    own children (a wrapper's, a scanner's workers) are told to stop too, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
