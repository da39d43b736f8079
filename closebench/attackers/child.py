"""The runner's side of an attacker child: a process in the attacker host that reports in lines.

The packet attackers (scapy, volume) run their engine in such a child
(closebench/attackers/packet/); a Reader turns its lines into Attempts for the sink and notes what
the child says of itself. Child.run() starts it, hands each line to the reader until its output
ends, turns a cancel (or a deadline) into SIGTERM once the child catches it, SIGKILLs it if that
does not end it, and reaps it whatever happens.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import tempfile
import threading
import time
from typing import IO, TYPE_CHECKING, Protocol

from closebench.core.errors import LabError
from closebench.core.readable import readable

if TYPE_CHECKING:  # the attackers' children import this module too: keep their start light
    pass

CANCEL_POLL = 0.1  # seconds between looks at the cancel event
STOP_GRACE = 3.0  # seconds the child has after SIGTERM to wind up and report


class Spawner(Protocol):
    """Where a child runs: a lab Host, or this machine itself (the Locust engine's Machine)."""

    def spawn(self, argv: list[str], **popen_kwargs) -> subprocess.Popen: ...


class Reader(Protocol):
    """What the runner learns from the child's lines."""

    ready: bool  # it said it catches SIGTERM: from now on a stop is an orderly one
    error: str | None  # it said it failed
    result: dict | None  # its last word: what the attack cost the attacker

    def line(self, text: str) -> None: ...


class Child:
    """`argv` run in `host`, with `stdin` written to it, its stdout read line by line.

    `startup_grace`: seconds from its start during which a stop waits for the child to be ready
    (SIGTERM before that would end it unheard); after that it is SIGTERMed ready or not.
    """

    def __init__(
        self,
        host: Spawner,
        argv: list[str],
        stdin: bytes | None = None,
        startup_grace: float = STOP_GRACE,
    ) -> None:
        self.host = host
        self.argv = argv
        self.stdin = stdin
        self.startup_grace = startup_grace
        self.process: subprocess.Popen | None = None
        self.output_ended = False
        self.stderr = ""  # the last lines it wrote there, once it is reaped

    def run(self, reader: Reader, cancel: threading.Event, deadline: float = math.inf) -> None:
        """Run it to its end: stopped on `cancel` or after `deadline` (a time.monotonic())."""
        with tempfile.TemporaryFile() as stderr:
            self.process = self.host.spawn(
                self.argv,
                stdin=subprocess.DEVNULL if self.stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
            try:
                self._feed()
                self._relay(reader, cancel, deadline)
            finally:
                # Its output ended: it is exiting by itself. Otherwise (the sink raised, Ctrl-C)
                # stop it now.
                self._stop()
                self.stderr = tail(stderr)

    def result(self, reader: Reader, who: str) -> dict:
        """The child's report, or a LabError saying why there is none."""
        if reader.error is not None:
            raise LabError(f"{who}: {reader.error}")
        if reader.result is None:
            assert self.process is not None
            raise LabError(
                f"{who} exited with status {self.process.returncode} without reporting: "
                f"{self.stderr or 'no output'}"
            )
        return reader.result

    def _feed(self) -> None:
        assert self.process is not None
        if self.process.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError):  # it died at once: its stderr will say why
            self.process.stdin.write(self.stdin or b"")
            self.process.stdin.close()

    def _relay(self, reader: Reader, cancel: threading.Event, deadline: float) -> None:
        """Until its stdout ends; on a stop, SIGTERM it and read what it still says."""
        process = self.process
        assert process is not None and process.stdout is not None
        lines = _Lines(process.stdout.fileno())
        unheard_after = time.monotonic() + self.startup_grace
        kill_at: float | None = None  # set once it has been asked to stop
        killed = False
        while True:
            for line in lines.read() if readable(lines.fd, CANCEL_POLL) else []:
                reader.line(line)
            if lines.eof:
                self.output_ended = True
                return
            now = time.monotonic()
            stopping = cancel.is_set() or now > deadline
            if kill_at is None and stopping and (reader.ready or now > unheard_after):
                process.terminate()  # it winds up, reports, exits
                kill_at = now + STOP_GRACE
            elif kill_at is not None and now > kill_at and not killed:
                process.kill()  # the child dies with its launcher (PDEATHSIG): EOF ends this loop
                killed = True

    def _stop(self) -> None:
        """Reap it: give it STOP_GRACE to exit if its output ended, then SIGTERM, then SIGKILL."""
        process = self.process
        assert process is not None and process.stdout is not None
        process.stdout.close()  # one still writing (the runner failed) gets EPIPE, not a full pipe
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_GRACE if self.output_ended else 0.0)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()  # the child itself dies with its launcher (PR_SET_PDEATHSIG)
                process.wait()


class _Lines:
    """Complete, non-empty text lines from a pipe, read without blocking the cancel checks."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.eof = False
        self._rest = b""

    def read(self) -> list[str]:
        chunk = os.read(self.fd, 1 << 20)
        if not chunk:
            self.eof = True
            return []
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        return [line.decode() for line in lines if line.strip()]


def tail(stream: IO[bytes], lines: int = 3) -> str:
    """The last lines a process wrote into `stream`, on one line."""
    stream.seek(0)
    text = stream.read().decode(errors="replace").strip()
    return " | ".join(text.splitlines()[-lines:])
