"""What the master tells every worker: the attack, and the names of the messages they exchange.

Kept free of Locust, so that closebench can build the settings without importing it. The settings
travel as one JSON option of the master's (`closebench_settings`): Locust hands a master's options
that are not its own to every worker with the order to spawn users.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field

from closebench.attackers.policy import Policy, Target

OPTION = "closebench_settings"  # the master's option that carries the settings to the workers
ATTEMPTS_MESSAGE = "closebench-attempts"  # worker -> master: a batch of attempt records
HELLO_MESSAGE = "closebench-hello"  # worker -> master: its name, once connected
WORKER_NAME_ENV = "CLOSEBENCH_WORKER"  # a worker's name (default: its machine's host name)


@dataclass(frozen=True)
class AttackSettings:
    """One Locust user is one spam script running `policy` against `target` as `label`."""

    target: Target
    policy: Policy
    label: str = "locust"
    # Names this attack: a worker runs it once, even if Locust hands it a user again (it does
    # when a worker joins or goes missing mid-run, to rebalance users the policy counts per user).
    attack_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AttackSettings:
        data = json.loads(text)
        target, policy = Target(**data.pop("target")), Policy(**data.pop("policy"))
        return cls(target, policy, **data)


def worker_name() -> str:
    return os.environ.get(WORKER_NAME_ENV) or socket.gethostname()


def split_host_port(text: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets: `[::1]:5557`) as (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)
