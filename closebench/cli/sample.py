"""`closebench sample --pid PID --out DIR`: the server's side of an attack on a server outside
the lab, run on the server's machine. The lab's sampler (defender/metrics.py) on that process and
its network namespace (on a machine with other services, their sockets count too), written to
DIR/samples.csv as it goes, each row with its Unix time; `closebench report RUN --samples DIR`
merges them into the run (trials/server_samples.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import socket
import threading
import time
from pathlib import Path

import psutil

from closebench.core.background import ctrl_c_sets
from closebench.core.errors import UsageError
from closebench.core.safe_files import SafeDirectory
from closebench.defender.metrics import DefenderSampler
from closebench.results.run_directory import SAMPLES_FILE
from closebench.trials.server_samples import ABOUT, UNIX_T

WRITE_EVERY = 0.5  # seconds between flushes of new samples to the file


class ProcessHost:
    """What the sampler reads of a host, for a process on this machine: its network namespace's
    /proc/net files, through /proc/PID."""

    role = "server"

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def proc_net(self, name: str) -> str:
        with open(f"/proc/{self.pid}/net/{name}") as f:
            return f.read()


def run_sample_command(args: argparse.Namespace, console) -> int:
    if not 1 <= args.hz <= 100:
        raise UsageError(f"--hz {args.hz:g}: give 1 to 100 samples per second")
    try:
        process = psutil.Process(args.pid)
        name = process.name()
    except psutil.NoSuchProcess:
        raise UsageError(f"--pid {args.pid}: no such process") from None
    out = Path(args.out)
    # Opened once (refused where another user could change it), written through its descriptor.
    directory = SafeDirectory(out, "give another --out", create=True)
    stream = directory.open(SAMPLES_FILE, "w", replace=True)
    stop = threading.Event()
    with directory, stream, ctrl_c_sets(stop):
        sampler = DefenderSampler(ProcessHost(args.pid), [args.pid], args.hz)  # type: ignore[arg-type]
        about = {
            "pid": args.pid,
            "name": name,
            "host": socket.gethostname(),
            "hz": args.hz,
            "started_unix": sampler.started_unix,
        }
        directory.write(ABOUT, json.dumps(about, indent=2) + "\n")
        console.print(
            f"sampling {name} (pid {args.pid}) at {args.hz:g}/s into {out / SAMPLES_FILE}; "
            "Ctrl-C to stop",
            highlight=False,
        )
        written = _record(sampler, process, stream, stop, args.duration)
    console.print(f"{written} samples in {out / SAMPLES_FILE}", highlight=False)
    return 0


def _record(sampler: DefenderSampler, process, stream, stop: threading.Event, duration) -> int:
    """Write the sampler's samples as they come, until stopped, `duration` or the process ends."""
    writer = None
    written = 0
    deadline = time.monotonic() + duration if duration else None
    while True:
        ended = not process.is_running()
        done = ended or stop.wait(WRITE_EVERY) or (deadline and time.monotonic() > deadline)
        if done:
            sampler.stop()
        for sample in sampler.samples[written:]:
            row = {UNIX_T: sampler.started_unix + sample.t, **sample.row()}
            if writer is None:
                writer = csv.DictWriter(stream, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            written += 1
        stream.flush()
        if done:
            return written
