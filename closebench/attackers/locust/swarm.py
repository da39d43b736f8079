"""The Locust engine, closebench's side: a master and its workers for one attacker.

prepare() starts the master (a child reporting in lines: attackers/child.py, locust/master.py) and
the workers it places, and returns once every worker has connected and named itself, so that the
trial's clock does not count Locust's start-up. run() signals the start, hands each relayed attempt
to the trial's sink, notes a worker that dies (which, when: its process's exit in the lab, or the
master's last word from it), and returns per-worker figures with the rest of the attacker's cost.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Protocol

from closebench.attackers.child import Child, tail
from closebench.attackers.locust.settings import AttackSettings, split_host_port
from closebench.attackers.locust.ui import Forwarder, loopback_listener
from closebench.attackers.policy import Policy, Target
from closebench.core.errors import LabError
from closebench.core.outcomes import Attempt
from closebench.core.summary import summarize
from closebench.lab import Host, Lab, stop_processes

POLL = 0.1  # seconds between looks at the master and the workers
JOIN_TIMEOUT = 30.0  # seconds the workers have to connect to the master
OVERRUN = 30.0  # seconds past the master's own bound before closebench stops it itself
WEB_PORT = 8089  # Locust's usual web UI port


class Machine(Protocol):
    """Where the engine starts processes: a lab host, or this machine itself (remote.py)."""

    role: str

    def spawn(self, argv: list[str], **popen_kwargs) -> subprocess.Popen: ...

    def stop_spawned(self) -> None: ...


@dataclass
class Placement:
    """Where the master and the workers run, and how the workers reach the master."""

    master: Machine
    bind: str  # HOST:PORT the master listens on for workers
    connect: tuple[str, int]  # where the workers connect to
    workers: list[tuple[Machine, str]]  # (where, worker name) for each worker closebench starts
    expected: int  # workers the master waits for: those above, and any started elsewhere
    web: str | None = None  # HOST:PORT for Locust's web UI, or None: headless
    ui_loopback_port: int | None = None  # relay 127.0.0.1:PORT here to `web` in the master's host
    join_timeout: float = JOIN_TIMEOUT


def lab_placement(
    lab: Lab, hosts: list[Host], family: int, ui_port: int | None = None
) -> Placement:
    """The master in the lab's main attacker host, a worker in each of `hosts`; with `ui_port`,
    Locust's web UI on the master's lab address, relayed from 127.0.0.1:`ui_port`."""
    address = lab.attacker_ip(family)
    port = free_port(lab.attacker, address)
    bracketed = f"[{address}]" if ":" in address else address
    return Placement(
        master=lab.attacker,
        bind=f"{bracketed}:{port}",
        connect=(address, port),
        workers=[(host, host.role) for host in hosts],
        expected=len(hosts),
        web=f"{bracketed}:{WEB_PORT}" if ui_port else None,
        ui_loopback_port=ui_port,
    )


def free_port(host: Host, address: str) -> int:
    """A TCP port nothing in `host` uses now (the host is the lab's own: nobody else takes it)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with host.entered():
        probe = socket.socket(family, socket.SOCK_STREAM)
    with probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


@dataclass
class Worker:
    """One worker, from its hello on: what it sent, and whether it was lost before it was done."""

    name: str
    host: str  # its machine's host name
    attempts: list[Attempt] = field(default_factory=list)
    done: bool = False
    lost_at: float | None = None  # Unix time: its process died, or it was last heard of
    lost: str | None = None  # how it was lost


class Relay:
    """Reads the master's lines (master.py): workers, attempts for the sink, the result."""

    def __init__(self) -> None:
        self.ready = False
        self.error: str | None = None
        self.result: dict | None = None
        self.workers: dict[str, Worker] = {}  # by Locust's node id
        self.all_here = threading.Event()
        self.finished = threading.Event()  # the attack is over (the master winds up after)
        self.sink: Callable[[Attempt], None] | None = None

    def line(self, text: str) -> None:
        record = json.loads(text)
        kind = record.pop("kind")
        if kind == "ready":
            self.ready = True
        elif kind == "hello":
            self.workers[record["node"]] = Worker(record["worker"], record.get("host", ""))
        elif kind == "workers":
            self.all_here.set()
        elif kind == "attempts":
            self._attempts(record)
        elif kind == "lost":
            worker = self.workers.get(record["node"])
            if worker is not None:
                how = "stopped answering" if record["how"] == "missing" else "quit"
                lose(worker, record["t"], how)
        elif kind == "finished":
            self.finished.set()
        elif kind == "result":
            self.result = record
        elif kind == "error":
            self.error = record["message"]

    def _attempts(self, record: dict) -> None:
        worker = self.workers.setdefault(record["node"], Worker(record["worker"], ""))
        for data in record["records"]:
            attempt = Attempt.from_dict(data)
            worker.attempts.append(attempt)
            if self.sink is not None:
                self.sink(attempt)
        worker.done = worker.done or record["done"]

    def named(self, name: str) -> Worker | None:
        # list(): atomic against the relay thread adding workers meanwhile
        return next((w for w in list(self.workers.values()) if w.name == name), None)


def lose(worker: Worker, when: float, how: str) -> None:
    """Mark `worker` lost (once: the first word of it counts)."""
    if not worker.done and worker.lost is None:
        worker.lost_at, worker.lost = when, how


class LocustEngine:
    """Runs the kernel spammer's policy on Locust: one user per worker, each worker a machine."""

    name = "locust"

    def __init__(self, label: str = "locust") -> None:
        self.label = label
        self.relay = Relay()
        self.placement: Placement | None = None
        self._child: Child | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()  # stops the master (SIGTERM), whatever the reason
        self._processes: dict[str, subprocess.Popen] = {}  # our workers, by name
        self._stderr: dict[str, IO[bytes]] = {}
        self._ui: Forwarder | None = None
        self.started_unix: float | None = None

    def prepare(
        self,
        placement: Placement,
        target: Target,
        policy: Policy,
        cancel: threading.Event,
        csv_prefix: str | None = None,
    ) -> None:
        """Start the master and the workers; return once all are connected (LabError if not).
        `csv_prefix`: the master writes Locust's CSV files (PREFIX_stats.csv...) at the end."""
        self.placement = placement
        if placement.ui_loopback_port is not None and placement.web:
            master_ui = split_host_port(placement.web)
            listener = loopback_listener(placement.ui_loopback_port)
            assert isinstance(placement.master, Host)  # relayed into a lab host only
            self._ui = Forwarder(listener, placement.master, master_ui)
        settings = AttackSettings(target, policy, self.label)
        argv = self._master_argv(placement, settings, csv_prefix)
        self._child = Child(placement.master, argv)
        self._thread = threading.Thread(
            target=self._child.run, args=(self.relay, self._stop), name=f"{self.label}-master"
        )
        self._thread.start()
        try:
            self._wait(lambda: self.relay.ready, cancel, "start")
            for host, name in placement.workers:
                self._start_worker(host, name, placement.connect)
            self._wait(self.relay.all_here.is_set, cancel, "gather its workers")
        except BaseException:
            self.close()
            if not cancel.is_set():
                raise
            # Interrupted before the attack: like a cancelled attacker, it attacks no more.

    def run(self, lab, target, policy, sink, cancel, source=None) -> dict:
        """The attack itself (the Attacker protocol), once prepare() has returned: until the
        master says it is over; close() then lets it wind up."""
        assert self._child is not None and self._child.process is not None and self._thread
        if not self.relay.all_here.is_set():  # prepare() was interrupted
            return {"engine": "locust", "workers": []}
        self.relay.sink = sink
        started = time.monotonic()
        self.started_unix = time.time()
        self._child.process.send_signal(signal.SIGUSR1)
        overrun = started + (policy.duration or 0) + policy.timeout + OVERRUN
        while not self.relay.finished.wait(POLL) and self._thread.is_alive():
            self._note_dead_workers()
            if cancel.is_set() or (policy.duration and time.monotonic() > overrun):
                self._stop.set()
        duration = time.monotonic() - started
        if not self.relay.finished.is_set() and not cancel.is_set():
            self.close()
            self._child.result(self.relay, "the Locust master")  # says why it ended
        return {"engine": "locust", "workers": self.worker_figures(duration)}

    def worker_figures(self, duration: float) -> list[dict]:
        """Each worker's attempts and rate over the attack, and when it was lost if it was."""
        rows = []
        for worker in sorted(self.relay.workers.values(), key=lambda w: w.name):
            summary = summarize(worker.name, worker.attempts, duration)
            lost_s = None
            if worker.lost_at is not None and self.started_unix is not None:
                lost_s = max(0.0, worker.lost_at - self.started_unix)
            rows.append(
                {
                    "worker": worker.name,
                    "host": worker.host,
                    "addresses": sorted({a.src for a in worker.attempts}),
                    "attempts": summary.attempts,
                    "attempts_per_s": summary.attempts_per_s,
                    "hang_median_s": summary.hang_median_s,
                    "outcomes": summary.outcomes,
                    "lost_s": lost_s,
                    "lost": worker.lost,
                }
            )
        return rows

    def close(self) -> None:
        """Stop the master and our workers, and reap them (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._ui is not None:
            self._ui.close()
            self._ui = None
        stop_processes(list(self._processes.values()))
        for stream in self._stderr.values():
            stream.close()
        self._stderr.clear()

    @staticmethod
    def _master_argv(
        placement: Placement, settings: AttackSettings, csv_prefix: str | None
    ) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "closebench.attackers.locust.master",
            "--bind",
            placement.bind,
        ]
        argv += ["--workers", str(placement.expected), "--settings", settings.to_json()]
        argv += ["--join-timeout", str(placement.join_timeout)]
        if placement.web:
            argv += ["--web", placement.web]
        if csv_prefix:
            argv += ["--csv", csv_prefix]
        return argv

    def _start_worker(self, host: Machine, name: str, master: tuple[str, int]) -> None:
        argv = [sys.executable, "-m", "closebench.attackers.locust.worker", "--name", name]
        argv += ["--master-host", master[0], "--master-port", str(master[1])]
        stderr = self._stderr[name] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._processes[name] = host.spawn(argv, stdout=subprocess.DEVNULL, stderr=stderr)

    def _wait(self, condition: Callable[[], bool], cancel: threading.Event, what: str) -> None:
        """Until `condition()`; LabError when the master or a worker fails first."""
        assert self._thread is not None
        while not condition():
            if cancel.is_set():
                raise LabError(f"{self.label}: interrupted while Locust was starting")
            if self.relay.error:
                raise LabError(f"{self.label}: the Locust master: {self.relay.error}")
            if not self._thread.is_alive():
                raise LabError(f"{self.label}: the Locust master exited before it could {what}")
            for name, process in self._processes.items():
                if process.poll() is not None:
                    stderr = tail(self._stderr[name])
                    raise LabError(
                        f"{self.label}: Locust worker {name} exited with status "
                        f"{process.returncode} before the attack: {stderr or 'no output'}"
                    )
            time.sleep(POLL)

    def _note_dead_workers(self) -> None:
        """A worker of ours whose process ended before its user was done is lost, now."""
        for name, process in self._processes.items():
            worker = self.relay.named(name)
            if worker is not None and process.poll() is not None:
                lose(worker, time.time(), exit_text(process.returncode))


def exit_text(status: int) -> str:
    """How a process ended, from its exit status (or 128 + signal, as the lab's launcher gives)."""
    number = -status if status < 0 else status - 128 if status > 128 else 0
    if number:
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            pass
    return f"exited with status {status}"
