"""One attempt of a kernel-socket client, from its SYN to its end: the one classification.

The conversation (connect, an optional pause, the request, then reading until the server ends it
or the client's timeout does) is written once, as a generator that yields the socket operations it
needs and is sent their results, or has their OSError thrown in. Each kind of socket drives it: the
asyncio spammer (attackers/kernel.py) with awaits, the Locust user (locust/user.py) with gevent's
blocking-style sockets through drive_blocking(). Both therefore record the same times and outcomes.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from closebench.attackers.policy import Target
from closebench.core.outcomes import (
    Attempt,
    ClosedBy,
    Outcome,
    http_status,
    outcome_of_error,
    server_excerpt,
)

RECEIVE_SIZE = 65536
HEAD_SIZE = 64  # bytes of the response kept for its status line


@dataclass(frozen=True)
class Connect:
    address: tuple[str, int]
    timeout: float


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Receive:
    timeout: float  # what is left of the client's timeout


@dataclass(frozen=True)
class Unsent:
    """How many bytes written are not yet acknowledged (a bot's look for a zero window)."""


@dataclass(frozen=True)
class Abort:
    """Close with an RST (SO_LINGER 0) when the socket is closed: a FIN cannot leave behind
    bytes a zero window holds."""


Step = Connect | Pause | Send | Receive | Unsent | Abort
Conversation = Generator[Step, bytes | int | None, None]


def new_attempt(label: str, target: Target, sock: socket.socket, timeout: float) -> Attempt:
    """The record of an attempt about to send its SYN from `sock` (bound already)."""
    source, sport = sock.getsockname()[:2]
    return Attempt(
        attacker=label,
        family=target.family,
        src=source,
        sport=sport,
        dst=target.address,
        dport=target.port,
        client_timeout=timeout,
        outcome=Outcome.SILENT,
        t_syn=time.time(),
    )


def conversation(
    attempt: Attempt,
    target: Target,
    request_delay: float,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> Conversation:
    """Fill in `attempt` as the steps' results come back; ends once the attempt has ended.
    `clock` gives the record's times, `monotonic` the timeout's (tests give both, no socket)."""
    timeout = attempt.client_timeout
    established = False
    head = b""
    try:
        yield Connect((target.address, target.port), timeout)
        established = True
        attempt.t_established = clock()
        if request_delay:
            yield Pause(request_delay)
        yield Send(target.request())
        attempt.t_request = clock()
        deadline = monotonic() + timeout
        while True:
            remaining = deadline - monotonic()
            if remaining <= 0:
                raise TimeoutError
            chunk = yield Receive(remaining)
            if (taken := take_chunk(attempt, head, chunk, clock)) is None:
                break  # the server's FIN
            head = taken
    except OSError as error:
        outcome = outcome_of_error(error, established)
        if outcome is None:
            attempt.outcome = Outcome.RST if established else Outcome.REFUSED
            attempt.detail = f"{type(error).__name__}: {error}"
        else:
            attempt.outcome = outcome
    finish_attempt(attempt, head, clock)


def take_chunk(
    attempt: Attempt, head: bytes, chunk: object, clock: Callable[[], float]
) -> bytes | None:
    """Count what a Receive brought; the server's first bytes so far, or None on its FIN (the
    attempt then ends with it)."""
    if not isinstance(chunk, bytes) or not chunk:  # b"": the server's FIN
        attempt.outcome = Outcome.FIN
        return None
    if not attempt.bytes_received:
        attempt.t_first_byte = clock()
    attempt.bytes_received += len(chunk)
    return (head + chunk)[:HEAD_SIZE]


def finish_attempt(attempt: Attempt, head: bytes, clock: Callable[[], float] = time.time) -> None:
    """The end of an attempt's record: its time, who closed, what the server said (`head`: its
    first bytes)."""
    attempt.t_end = clock()
    # Its own timeout ended it (silent, syn-timeout), or the server did: what the class says.
    attempt.closed_by = ClosedBy.of(attempt.outcome).value
    attempt.data_first = attempt.bytes_received > 0
    attempt.http_status = http_status(head)
    attempt.excerpt = server_excerpt(head)


def unsent_bytes(sock: socket.socket) -> int:
    """Bytes written to the socket that the server has not acknowledged (SIOCOUTQ): all of a
    request sent against a window that stayed zero."""
    answer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int.from_bytes(answer, "little", signed=True)


def abort_on_close(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def advance(steps: Conversation, result: bytes | int | None, error: OSError | None) -> Step | None:
    """Hand a step's result (or its error) to the conversation: its next step, None at the end."""
    try:
        return steps.send(result) if error is None else steps.throw(error)
    except StopIteration:
        return None


def drive_blocking(sock: socket.socket, steps: Conversation, sleep=time.sleep) -> None:
    """Run a conversation on a blocking-style socket (gevent's cooperative ones included)."""
    step = advance(steps, None, None)
    while step is not None:
        try:
            step = advance(steps, _perform(sock, step, sleep), None)
        except OSError as error:
            step = advance(steps, None, error)


def _perform(sock: socket.socket, step: Step, sleep) -> bytes | int | None:
    if isinstance(step, Connect):
        sock.settimeout(step.timeout)
        sock.connect(step.address)
    elif isinstance(step, Pause):
        sleep(step.seconds)
    elif isinstance(step, Send):
        sock.sendall(step.data)
    elif isinstance(step, Unsent):
        return unsent_bytes(sock)
    elif isinstance(step, Abort):
        abort_on_close(sock)
    else:
        sock.settimeout(step.timeout)
        return sock.recv(RECEIVE_SIZE)
    return None
