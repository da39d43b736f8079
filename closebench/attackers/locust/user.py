"""The Locust user: closebench's kernel spammer as one spam script on a Locust worker.

Its attack comes from the master (settings.py). It keeps `concurrency` connections in flight from
gevent greenlets, honours the policy's rate, attempt cap and duration (the same Budget as the
asyncio spammer), and runs every attempt through the one conversation (attackers/conversation.py),
so its records have the same times and outcome classes. Each attempt is a Locust request event
(type TCP, name = outcome class, response time = SYN to end), which Locust's stats, CSVs and web UI
show; the full records go to the master in batches, the last one marked `done`.

Importing this module imports Locust, which patches the standard library for gevent.
"""

from __future__ import annotations

import os
import socket

import gevent
from locust import User, constant, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

from closebench.attackers.conversation import conversation, drive_blocking, new_attempt
from closebench.attackers.locust.settings import (
    ATTEMPTS_MESSAGE,
    HELLO_MESSAGE,
    OPTION,
    AttackSettings,
    worker_name,
)
from closebench.attackers.policy import Budget, Target
from closebench.core.outcomes import Attempt

_attacked: set[str] = set()  # the attack_ids this worker has run

BATCH_EVERY = 0.25  # seconds between batches to the master
BATCH_MAX = 1000  # records in one batch at most
REQUEST_TYPE = "TCP"  # the request type Locust's stats show for every attempt


class Outbox:
    """Attempt records on their way to the master, sent in batches from a greenlet of its own."""

    def __init__(self, environment, worker: str) -> None:
        self.environment = environment
        self.worker = worker
        self.records: list[dict] = []
        self._sender = gevent.spawn(self._every_batch)

    def add(self, record: dict) -> None:
        self.records.append(record)
        if len(self.records) >= BATCH_MAX:
            self.send()

    def _every_batch(self) -> None:
        while True:
            gevent.sleep(BATCH_EVERY)
            self.send()

    def send(self, done: bool = False) -> None:
        records, self.records = self.records, []
        if records or done:
            data = {"worker": self.worker, "records": records, "done": done}
            self.environment.runner.send_message(ATTEMPTS_MESSAGE, data)

    def close(self) -> None:
        """The last batch, marked done: this user will send nothing more."""
        self._sender.kill()
        self.send(done=True)


class SpamScript(User):
    """One spam script: `concurrency` connections in flight until its policy's bounds are met."""

    wait_time = constant(0)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        text = getattr(options, OPTION, None)
        if not text:
            raise StopUser(
                "this user takes its attack from a closebench master: "
                "closebench attack --engine locust ..."
            )
        self.settings = AttackSettings.from_json(text)
        if self.settings.attack_id in _attacked:
            raise StopUser("this worker has run its attack already")
        _attacked.add(self.settings.attack_id)
        self.outbox = Outbox(self.environment, worker_name())
        self.slots: list[gevent.Greenlet] = []

    @task
    def attack(self) -> None:
        policy = self.settings.policy
        budget = Budget(policy)
        source = source_address(self.settings.target)
        self.slots = [gevent.spawn(self._slot, budget, source) for _ in range(policy.concurrency)]
        gevent.joinall(self.slots)
        raise StopUser

    def on_stop(self) -> None:
        # Stopped early (the master stopped the test), the slots end with this user.
        gevent.killall(getattr(self, "slots", []))
        if hasattr(self, "outbox"):
            self.outbox.close()

    def _slot(self, budget: Budget, source: str) -> None:
        while (wait := budget.claim()) is not None:
            gevent.sleep(wait)
            self._report(self._attempt(source))
            if not self.settings.policy.reconnect:
                return

    def _attempt(self, source: str) -> Attempt:
        target, policy = self.settings.target, self.settings.policy
        family = socket.AF_INET if target.family == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((source, 0))
            attempt = new_attempt(self.settings.label, target, sock, policy.timeout)
            drive_blocking(sock, conversation(attempt, target, policy.request_delay), gevent.sleep)
        return attempt

    def _report(self, attempt: Attempt) -> None:
        assert attempt.t_end is not None
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE,
            name=attempt.outcome.value,
            response_time=(attempt.t_end - attempt.t_syn) * 1000,
            response_length=attempt.bytes_received,
            exception=None,
            context={},
        )
        self.outbox.add(attempt.to_dict())


def source_address(target: Target) -> str:
    """The address this machine sends from to `target` (its route's source), found once."""
    family = socket.AF_INET if target.family == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((target.address, target.port))  # UDP: a route lookup, nothing is sent
        return probe.getsockname()[0]


@events.init.add_listener
def _say_hello(environment, **_kwargs) -> None:
    """A worker names itself to the master as soon as it is connected."""
    if isinstance(environment.runner, WorkerRunner):
        data = {"worker": worker_name(), "host": socket.gethostname(), "pid": os.getpid()}
        environment.runner.send_message(HELLO_MESSAGE, data)
