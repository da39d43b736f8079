"""A Locust worker running closebench's user: `closebench locust-worker --master HOST[:PORT]` runs

    python -m closebench.attackers.locust.worker --master-host HOST --master-port PORT [--name NAME]

on each attacking machine (closebench starts one in each of its lab's worker hosts the same way).
It connects to the master, takes its attack from it, and ends when the master quits, or on SIGTERM
or Ctrl-C (its user then sends its last batch and the master is told it quit).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import gevent
import locust  # before the rest of closebench: it patches the standard library for gevent
from locust.env import Environment

from closebench.attackers.locust.settings import WORKER_NAME_ENV
from closebench.attackers.locust.user import SpamScript


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.name:
        os.environ[WORKER_NAME_ENV] = args.name
    environment = Environment(user_classes=[SpamScript], events=locust.events)
    try:
        runner = environment.create_worker_runner(args.master_host, args.master_port)
    except ConnectionError as error:
        print(f"closebench locust-worker: {error}", file=sys.stderr)
        return 1
    environment.events.init.fire(environment=environment, runner=runner, web_ui=None)
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, runner.quit)
    runner.greenlet.join()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m closebench.attackers.locust.worker")
    parser.add_argument("--master-host", required=True)
    parser.add_argument("--master-port", type=int, required=True)
    parser.add_argument("--name", help=f"this worker's name (default: ${WORKER_NAME_ENV} or host)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
