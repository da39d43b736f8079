"""Bot profiles: abusers whose patience is written in their source, run with kernel sockets.

A profile is a bot's timers and habits as its published source or paper sets them, not
closebench's `timeout`: how long it waits to connect, how long it waits without a byte once
connected, how many tries it spends on one target, how many connections it keeps going. Each
connection is an attempt of its own, read from the wire as the kernel attacker's are
(wire/classify.py reconcile); its record's `detail` says what the bot made of it.

- `mirai`: the scanner of Mirai's published source (mirai/bot/scanner.c, scanner.h, 2016): 128
  connection slots (SCANNER_MAX_CONNS), a 5 s connect timeout and a 30 s timeout without data once
  connected (`timeout = (conn->state > SC_CONNECTING ? 30 : 5)`, counted from the last byte
  received), up to 10 tries per target (`if (++(conn->tries) == 10)`), both when the server
  closes and when the 30 s pass; a failed connect drops the target. Mirai brute-forces telnet;
  here a try is one request (one credential pair), sent on connecting.
- `degreaser`: a tarpit detector in the style of Degreaser (Alt, Beverly, Dainotti: "Uncovering
  Network Tarpits with Degreaser", ACSAC 2014; https://www.cmand.org/degreaser/): it connects,
  sends a short request, and after a probe time looks for a tarpit's marks: a zero window (its
  bytes still unacknowledged, as a window probe finds) or a drip (a few bytes, no end). Either
  and it leaves at once (a drip with its FIN; a zero window with an RST, since a FIN would
  queue behind the bytes the window holds); otherwise it waits as an ordinary client would.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

from closebench.attackers.bot_profiles import PROFILES, BotProfile
from closebench.attackers.conversation import (
    Abort,
    Connect,
    Conversation,
    Receive,
    Send,
    Unsent,
    finish_attempt,
    take_chunk,
)
from closebench.attackers.kernel import KernelSpammer
from closebench.attackers.policy import Budget, Policy, Target
from closebench.core.outcomes import Attempt, ClosedBy, Outcome, outcome_of_error

ZERO_WINDOW, DRIP = "zero window", "drip"  # a detector's verdicts


STOPPED = "stopped by closebench at the attack's end"


def bot_conversation(
    attempt: Attempt,
    target: Target,
    profile: BotProfile,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    stop_at: float = math.inf,
) -> Conversation:
    """One connection of a bot: connect within its connect timeout, send its try, then read
    until the server ends it, or no byte came for its idle timeout, or (a detector) it saw a
    tarpit's mark at its probe time. A bot's timers have no end of their own (a drip resets its
    idle timeout for ever): at `stop_at` (monotonic) closebench stops it, with an RST, and the
    attempt is closebench's to have ended (outlasted)."""
    established = False
    head = b""
    try:
        connect_s = min(profile.connect_timeout_s, max(0.0, stop_at - monotonic()))
        yield Connect((target.address, target.port), connect_s)
        established = True
        attempt.t_established = clock()
        request = target.request()
        yield Send(request)
        attempt.t_request = clock()
        probe_at = None if profile.probe_s is None else monotonic() + profile.probe_s
        while True:
            wait = min(profile.idle_timeout_s, max(0.0, stop_at - monotonic()))
            if probe_at is not None:
                wait = min(wait, max(0.0, probe_at - monotonic()))
            try:
                chunk = yield Receive(wait)
            except TimeoutError:
                if monotonic() >= stop_at:
                    raise Stopped from None
                if probe_at is None or monotonic() < probe_at:
                    raise
                verdict = yield from _probe(attempt, profile)
                if verdict == ZERO_WINDOW:
                    yield Abort()  # its FIN would wait behind the request for ever: an RST
                if verdict is not None:
                    attempt.detail = f"{profile.name}: {verdict} at +{profile.probe_s:g} s: left"
                    attempt.outcome = Outcome.SILENT
                    break
                probe_at = None
                continue
            if (taken := take_chunk(attempt, head, chunk, clock)) is None:
                break  # the server's FIN
            head = taken
    except Stopped:
        yield Abort()
        attempt.detail, attempt.outcome = STOPPED, Outcome.SILENT
    except OSError as error:
        attempt.outcome = outcome_of_error(error, established) or (
            Outcome.RST if established else Outcome.REFUSED
        )
        if not established and monotonic() >= stop_at:
            attempt.detail = STOPPED
    finish_attempt(attempt, head, clock)
    if attempt.detail == STOPPED:
        attempt.closed_by = ClosedBy.CLOSEBENCH.value


class Stopped(Exception):
    """The attack's end came before the bot's own timers did."""


def _probe(attempt: Attempt, profile: BotProfile):
    """A detector's look at the connection: its verdict (ZERO_WINDOW, DRIP) or None."""
    unsent = yield Unsent()
    if unsent:
        return ZERO_WINDOW
    if 0 < attempt.bytes_received < profile.drip_bytes:
        return DRIP
    return None


class BotAttacker(KernelSpammer):
    """A bot profile on kernel sockets: KernelSpammer's slots, each a bot's connection slot
    that spends up to tries_per_target connections on its target, then starts on the next (in
    the lab: the same server again, counted as a new target)."""

    name = "bot"

    def __init__(self, profile: str, label: str | None = None) -> None:
        super().__init__(label or profile)
        self.profile = PROFILES[profile]
        self.targets: Counter[str] = Counter()  # how each target ended: dropped, done
        self.stop_at = math.inf  # monotonic: when closebench stops what is still open

    def steps(self, attempt: Attempt, target: Target, policy: Policy) -> Conversation:
        return bot_conversation(attempt, target, self.profile, stop_at=self.stop_at)

    def timeout_of(self, policy: Policy) -> float:
        return self.profile.client_timeout()

    async def _slot(self, budget: Budget, target, policy, sink, sources: list[str]) -> None:
        # The bound every kernel attempt has: the attack's end plus one timeout.
        if budget.deadline is not None:
            self.stop_at = budget.deadline + policy.timeout
        tries = 0
        turn = _cycle(sources)
        while not self._cancel.is_set() and await budget.take():
            if self._drain.is_set():
                return
            try:
                attempt = await self.attempt(target, policy, next(turn), self.timeout_of(policy))
            except OSError as error:
                await self.note_local_error(error)
                continue
            tries += 1
            limit = self.profile.tries_per_target
            note = f"try {tries} of {limit}"
            if attempt.t_established is None:
                note, tries = f"{note}; no connection: target dropped", 0
                self.targets["dropped"] += 1
            elif tries >= limit:
                note, tries = f"{note}; target done", 0
                self.targets["done"] += 1
            attempt.detail = "; ".join(filter(None, [attempt.detail, note]))
            sink(attempt)
            if not policy.reconnect:
                return

    def run(self, lab, target, policy, sink, cancel, source=None, drain=None) -> dict:
        cost = super().run(lab, target, policy, sink, cancel, source, drain)
        profile = self.profile
        return {
            **cost,
            "profile": profile.name,
            "connect_timeout_s": profile.connect_timeout_s,
            "idle_timeout_s": profile.idle_timeout_s,
            "tries_per_target": profile.tries_per_target,
            "targets": dict(self.targets),
        }


def _cycle(sources: list[str]):
    while True:
        yield from sources
