"""The Locust master closebench runs as its child (engine.py), headless:

    python -m closebench.attackers.locust.master --bind HOST:PORT --workers N --settings JSON \
        [--web HOST:PORT]

It waits for N workers to connect and name themselves, waits for SIGUSR1 (the trial's start),
starts one user per worker, relays the workers' attempt batches, and ends once every user has
sent its last batch (or its worker was lost), or after the policy's duration plus its timeout and
a grace. SIGTERM stops the users at once. It reports on stdout, one JSON object a line:

    {"kind": "ready"}                          it now turns SIGTERM into an orderly stop
    {"kind": "hello", "node", "worker", "host", "t"}   a worker connected and named itself
    {"kind": "workers", "t"}                   all N are there: waiting for SIGUSR1
    {"kind": "started", "t"}                   users dispatched
    {"kind": "attempts", "node", "worker", "records": [...], "done"}   a worker's batch
    {"kind": "lost", "node", "t", "how"}       a worker went silent (t: when last heard) or quit
    {"kind": "finished", "t", "complete"}      every user is done (or stopped): the attack is over
    {"kind": "result", "requests": {...}, "complete"}   last: Locust's own request counts
    {"kind": "error", "message"}               a fatal problem; it then exits with 2
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gevent
import locust  # before the rest of closebench: it patches the standard library for gevent
from gevent.event import Event
from locust import argument_parser
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from closebench.attackers.locust.settings import (
    ATTEMPTS_MESSAGE,
    HELLO_MESSAGE,
    OPTION,
    AttackSettings,
    split_host_port,
)
from closebench.attackers.locust.user import SpamScript
from closebench.attackers.policy import Policy
from closebench.core.errors import ClosebenchError
from closebench.core.safe_files import SafeDirectory

POLL = 0.1  # seconds between looks at the workers
STOP_GRACE = 5.0  # seconds past duration + timeout before the users are stopped regardless
FINAL_BATCHES = 3.0  # seconds stopped users have to send their last batch


@dataclass
class Node:
    """A worker as the master knows it."""

    name: str
    last_heard: float
    attacking: bool = False  # it was there when the users were started: it got one
    done: bool = False
    lost: bool = False


class Swarm:
    """The master's side of one attack: workers joining, batches relayed, users ending."""

    def __init__(self, runner: MasterRunner, expected: int, out) -> None:
        self.runner = runner
        self.expected = expected
        self.out = out
        self.nodes: dict[str, Node] = {}
        runner.register_message(HELLO_MESSAGE, self._hello)
        runner.register_message(ATTEMPTS_MESSAGE, self._attempts)
        runner.environment.events.heartbeat_sent.add_listener(self._heard)

    def emit(self, kind: str, **fields) -> None:
        self.out.write(json.dumps({"kind": kind, **fields}) + "\n")
        self.out.flush()

    def _hello(self, environment, msg, **_kwargs) -> None:
        node = self.nodes.setdefault(msg.node_id, Node(msg.data["worker"], time.time()))
        node.name = msg.data["worker"]
        self.emit("hello", node=msg.node_id, t=time.time(), **msg.data)

    def _heard(self, client_id: str, timestamp: float, **_kwargs) -> None:
        if client_id in self.nodes:
            self.nodes[client_id].last_heard = timestamp

    def _attempts(self, environment, msg, **_kwargs) -> None:
        node = self.nodes.setdefault(msg.node_id, Node(msg.data["worker"], time.time()))
        node.last_heard = time.time()
        node.done = node.done or msg.data["done"]
        self.emit("attempts", node=msg.node_id, **msg.data)

    def watch(self) -> None:
        """Note workers that went missing (no heartbeat) or quit before their user was done."""
        while True:
            for node_id, node in self.nodes.items():
                if node.done or node.lost:
                    continue
                client = self.runner.clients.get(node_id)
                if client is None or client.state == STATE_MISSING:
                    node.lost = True
                    how = "quit" if client is None else "missing"
                    self.emit("lost", node=node_id, t=node.last_heard, how=how)
            gevent.sleep(POLL)

    def all_named(self) -> bool:
        return len(self.nodes) >= self.expected

    def start(self) -> None:
        """One user per worker there now (a worker joining later gets none)."""
        for node in self.nodes.values():
            node.attacking = True
        self.runner.start(user_count=len(self.nodes), spawn_rate=len(self.nodes))

    def finished(self) -> bool:
        return all(node.done or node.lost for node in self.nodes.values() if node.attacking)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = AttackSettings.from_json(args.settings)
    out = sys.stdout
    environment = Environment(
        user_classes=[SpamScript],
        events=locust.events,
        parsed_options=_options(args.settings),
        stop_timeout=0,  # a stop ends attempts in flight, as a cancelled asyncio spammer does
    )
    runner = environment.create_master_runner(*split_host_port(args.bind))
    swarm = Swarm(runner, args.workers, out)
    if args.web:
        host, port = split_host_port(args.web)
        sys.argv[1:] = []  # the web UI parses the command line as Locust's own: this is not
        environment.create_web_ui(host, port)
    stopping, go = Event(), Event()
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    gevent.signal_handler(signal.SIGINT, stopping.set)
    gevent.signal_handler(signal.SIGUSR1, go.set)
    gevent.spawn(swarm.watch)
    swarm.emit("ready")
    if not _wait(swarm.all_named, args.join_timeout, stopping) and not stopping.is_set():
        runner.quit()
        message = f"{len(swarm.nodes)} of {args.workers} Locust worker(s) connected within "
        swarm.emit("error", message=message + f"{args.join_timeout:g} s")
        return 2
    complete = _attack(swarm, settings.policy, stopping, go)
    swarm.emit("finished", t=time.time(), complete=complete)
    runner.quit()
    if args.csv:
        _write_csv(environment, args.csv)
    requests = {name: entry.num_requests for (name, _), entry in runner.stats.entries.items()}
    swarm.emit("result", requests=requests, complete=complete)
    return 0


def _attack(swarm: Swarm, policy: Policy, stopping: Event, go: Event) -> bool:
    """Start on `go`, until every user is done; False when stopped early."""
    if stopping.is_set():
        return False
    swarm.emit("workers", t=time.time())
    while not go.wait(POLL):
        if stopping.is_set():
            return False
    swarm.start()
    swarm.emit("started", t=time.time())
    bound = policy.duration + policy.timeout + STOP_GRACE if policy.duration else math.inf
    if _wait(swarm.finished, bound, stopping):
        return True
    swarm.runner.stop()  # the users stop now and send their last batches
    _wait(swarm.finished, FINAL_BATCHES, Event())
    return False


def _wait(condition, seconds: float, stopping) -> bool:
    """Until `condition()` holds (True), `seconds` pass or `stopping` is set (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if stopping.is_set() or time.monotonic() > deadline:
            return False
        gevent.sleep(POLL)
    return True


def _options(settings: str) -> argparse.Namespace:
    """Locust's default options, plus the settings every worker receives with its users.

    The master sends its options to each worker with the order to spawn, and a worker spends
    milliseconds per option deciding whether it is one of Locust's: only the settings are held
    here (so only they travel), Locust's defaults are looked up when read.
    """
    parser = argument_parser.get_empty_argument_parser()
    argument_parser.setup_parser_arguments(parser)
    defaults = vars(parser.parse_args([]))

    class Options(argparse.Namespace):
        def __getattr__(self, name: str):
            try:
                return defaults[name]
            except KeyError:
                raise AttributeError(name) from None

    return Options(**{OPTION: settings})


def _write_csv(environment: Environment, prefix: str) -> None:
    """Locust's own CSV files of the run: PREFIX_stats.csv, _failures.csv, _exceptions.csv."""
    import csv

    stats = StatsCSV(environment, PERCENTILES_TO_REPORT)
    # Opened once, written through its descriptor, refused where another user could change it
    # (closebench/core/safe_files.py); a run gives its directory's anchor.
    place, stem = Path(prefix).parent, Path(prefix).name
    try:
        with SafeDirectory(place, "give another --locust-csv", create=True) as directory:
            for suffix, write in (
                ("stats", stats.requests_csv),
                ("failures", stats.failures_csv),
                ("exceptions", stats.exceptions_csv),
            ):
                with directory.atomic(f"{stem}_{suffix}.csv") as stream:
                    write(csv.writer(stream))
    except ClosebenchError as error:
        print(f"closebench: Locust's CSV files not written: {error}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m closebench.attackers.locust.master")
    parser.add_argument("--bind", required=True, metavar="HOST:PORT")
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--settings", required=True, help="AttackSettings as JSON")
    parser.add_argument("--join-timeout", type=float, default=30.0)
    parser.add_argument("--web", metavar="HOST:PORT", help="serve Locust's web UI here")
    parser.add_argument("--csv", metavar="PREFIX", help="write Locust's CSV files at the end")
    return parser


if __name__ == "__main__":
    sys.exit(main())
