"""Figures derived from attempt records: what an attack cost the attacker."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from closebench.core.outcomes import Attempt, ClosedBy, Outcome


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0-100) by the nearest-rank method; None for no values."""
    ordered = np.sort(np.asarray(values, dtype=float))
    if not len(ordered):
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


# The columns of attempts summarize() reads: numpy arrays, times as float (NaN: did not happen).
SUMMARY_COLUMNS = ["t_syn", "t_established", "t_request", "t_end", "outcome"]
SUMMARY_COLUMNS += ["data_first", "bytes_received", "closed_by", "excerpt"]


def median(values) -> float | None:
    """The median (the mean of the middle two of an even count); None for no values."""
    present = np.asarray(values, dtype=float)
    return float(np.median(present)) if len(present) else None


def columns_of(attempts: list[Attempt]) -> dict[str, np.ndarray]:
    """Attempt records in memory as summarize()'s columns."""
    columns = {
        name: np.array([getattr(a, name) for a in attempts], dtype=float)
        for name in ("t_syn", "t_established", "t_request", "t_end")
    }
    columns["outcome"] = np.array([a.outcome.value for a in attempts], dtype=object)
    columns["data_first"] = np.array([a.data_first for a in attempts], dtype=bool)
    columns["bytes_received"] = np.array([a.bytes_received for a in attempts], dtype=np.int64)
    columns["closed_by"] = np.array([a.closer.value for a in attempts], dtype=object)
    columns["excerpt"] = np.array([a.excerpt for a in attempts], dtype=object)
    return columns


def closers(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Who closed each attempt (ClosedBy values): its closed_by, or, where that is not known (an
    older record), what its class implies (ClosedBy.of)."""
    outcomes = columns["outcome"]
    given = columns.get("closed_by")
    if given is None:
        given = np.full(len(outcomes), "", dtype=object)
    classes, index = np.unique(outcomes.astype(str), return_inverse=True)  # a few: per class
    implied = np.array([ClosedBy.of(Outcome(c)).value for c in classes], dtype=object)[index]
    known = np.isin(given, [c.value for c in ClosedBy])
    return np.where(known, given, implied)


def busy_time(starts: np.ndarray, ends: np.ndarray) -> float:
    """The length of the union of the intervals [start, end]: the time at least one of them was
    open, concurrent ones counted once (NaN ends left out)."""
    present = ~np.isnan(starts) & ~np.isnan(ends)
    order = np.argsort(starts[present], kind="stable")
    starts, ends = starts[present][order], np.maximum(ends[present][order], starts[present][order])
    if not len(starts):
        return 0.0
    # An interval starts a new stretch where it begins after every earlier one has ended.
    reach = np.maximum.accumulate(ends)
    new = np.concatenate(([True], starts[1:] > reach[:-1]))
    stretch = np.cumsum(new) - 1
    first, last = starts[new], np.zeros(new.sum())
    np.maximum.at(last, stretch, ends)
    return float((last - first).sum())


def derived_times(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """hang, connect wait and slot of each attempt (Attempt's properties, vectorised; NaN where
    the property is None)."""
    syn, end = columns["t_syn"], columns["t_end"]
    established = np.where(np.isnan(columns["t_established"]), end, columns["t_established"])
    with np.errstate(invalid="ignore"):  # NaN stays NaN
        hang = np.maximum(end - columns["t_request"], 0.0)
        connect = np.maximum(established - syn, 0.0)
        slot = np.maximum(end - syn, 0.0)
    return hang, connect, slot


@dataclass
class AttackSummary:
    """What attempts cost the attacker. The hang figures cover every attempt: its hang after the
    request, or, for one that never sent a request, its wait to connect (Attempt.waited_s)."""

    attacker: str
    attempts: int  # connections
    duration_s: float
    attempts_per_s: float
    hang_median_s: float | None  # the median (of an even count: the mean of the middle two)
    hang_p95_s: float | None
    hang_max_s: float | None
    connect_wait_median_s: float | None  # first SYN to established (or to the end)
    connect_wait_p95_s: float | None
    slot_median_s: float | None  # first SYN to the end: the whole attempt
    slot_p95_s: float | None
    attacker_seconds_wasted: float  # the sum of every attempt's slot, every outcome
    connect_waits: int  # attempts that sent no request: their hang figure is their connect wait
    outcomes: dict[str, int]
    data_first: int  # attempts that got response bytes before their end
    bytes_received: int
    runs: int | None = None  # command attackers: runs of the command (each opens connections)
    runs_per_s: float | None = None
    attacker_cost: dict = field(default_factory=dict)
    hang_q1_s: float | None = None  # quartiles of the hang figures: where attempts are few, the
    hang_q3_s: float | None = None  # median of two kinds of attempt may be neither's
    # The union of every attempt's slot: the time at least one connection was open, concurrent
    # ones counted once (attacker_seconds_wasted sums them).
    attacker_seconds_busy: float = 0.0
    closed_by: dict[str, int] = field(default_factory=dict)  # ClosedBy value: attempts
    # Attempts still open when closebench stopped their client (closed_by closebench): their
    # times are closebench's, so they stay out of the hang, connect-wait and slot figures.
    outlasted: int = 0
    # What the abuser learned: the share of attempts that got any byte from the server before
    # it closed, and the commonest first line they got (a banner, a status line) and its count.
    received_share: float | None = None
    common_excerpt: str | None = None
    common_excerpt_attempts: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(
    attacker: str, attempts: list[Attempt], duration_s: float, cost: dict | None = None
) -> AttackSummary:
    return summarize_columns(attacker, columns_of(attempts), duration_s, cost)


def summarize_columns(
    attacker: str, columns: dict[str, np.ndarray], duration_s: float, cost: dict | None = None
) -> AttackSummary:
    """summarize() of attempts as columns (columns_of(), or a Parquet file's: see
    closebench/results/records.py), vectorised: a million attempts take a fraction of a second."""
    hang, connects, slots = derived_times(columns)
    waits = np.where(np.isnan(hang), connects, hang)  # outcomes.waited()
    count = len(columns["t_syn"])
    closed_by = closers(columns)
    outlasted = closed_by == ClosedBy.CLOSEBENCH.value
    waits, connects, slots_own = (np.where(outlasted, np.nan, v) for v in (waits, connects, slots))
    counts = Counter(columns["outcome"].tolist())
    runs = (cost or {}).get("runs")  # a command attacker's (a run may open no connection)
    return AttackSummary(
        attacker=attacker,
        attempts=count,
        duration_s=duration_s,
        attempts_per_s=_rate(count, duration_s),
        hang_median_s=median(_present(waits)),
        hang_p95_s=percentile(_present(waits), 95),
        hang_max_s=_max(waits),
        connect_wait_median_s=median(_present(connects)),
        connect_wait_p95_s=percentile(_present(connects), 95),
        slot_median_s=median(_present(slots_own)),
        slot_p95_s=percentile(_present(slots_own), 95),
        attacker_seconds_wasted=float(_present(slots).sum()),
        connect_waits=int(np.isnan(columns["t_request"]).sum()),
        outcomes={o.value: counts[o.value] for o in Outcome if counts[o.value]},
        data_first=int(columns["data_first"].sum()),
        bytes_received=int(columns["bytes_received"].sum()),
        runs=runs,
        runs_per_s=None if runs is None else _rate(runs, duration_s),
        attacker_cost=cost or {},
        hang_q1_s=percentile(_present(waits), 25),
        hang_q3_s=percentile(_present(waits), 75),
        attacker_seconds_busy=busy_time(columns["t_syn"], columns["t_end"]),
        closed_by={c.value: int((closed_by == c.value).sum()) for c in ClosedBy},
        outlasted=int(outlasted.sum()),
        received_share=float(columns["data_first"].sum()) / count if count else None,
        **commonest_excerpt(columns.get("excerpt")),
    )


def commonest_excerpt(excerpts: np.ndarray | None) -> dict:
    """common_excerpt and common_excerpt_attempts of AttackSummary: the commonest non-empty
    excerpt (the first seen of a tie), and how many attempts got it."""
    if excerpts is None:
        return {}
    counts = Counter(e for e in excerpts.tolist() if e)
    if not counts:
        return {}
    text, count = counts.most_common(1)[0]
    return {"common_excerpt": text, "common_excerpt_attempts": count}


def _present(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def _max(values: np.ndarray) -> float | None:
    present = _present(values)
    return float(present.max()) if len(present) else None


def _rate(count: int, duration_s: float) -> float:
    return count / duration_s if duration_s > 0 else 0.0


@dataclass
class LegitSummary:
    requests: int
    succeeded: int  # got an HTTP 200
    success_rate: float | None
    latency_median_s: float | None
    latency_p95_s: float | None
    server_errors: int = 0  # answered 5xx: the server could not serve (e.g. out of fds)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_legit(attempts: list[Attempt]) -> LegitSummary:
    ok = [a for a in attempts if a.http_status == 200]
    latencies = [a.t_end - a.t_syn for a in ok if a.t_end is not None]
    return LegitSummary(
        requests=len(attempts),
        succeeded=len(ok),
        success_rate=len(ok) / len(attempts) if attempts else None,
        latency_median_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        server_errors=sum(1 for a in attempts if (a.http_status or 0) >= 500),
    )


@dataclass
class BanSummary:
    """What a ban strategy did, from the server's ban log and the attempt records.

    A ban is "in force" from its `t_effective` (blacklist: at once; fw-*: once nft committed it)
    for its duration. Figures by address are summed (or, for rates, pooled) over the addresses.
    """

    bans: int  # bans the server issued (an address banned again counts again)
    banned_addresses: int
    longest_ban_s: float | None
    time_to_ban_median_s: float | None  # from an address's first attempt to its first ban
    time_to_ban_max_s: float | None
    attempts_before_ban: int  # attempts started before their address's first ban (all, if none)
    attempts_after_ban: int
    attempts_per_s_after_ban: float | None  # per banned address: attempts / time after its ban
    syns_dropped: int | None  # SYN packets the firewall dropped or rejected; None: no firewall
    legit_wrongly_refused: int  # legitimate requests that failed while their address was banned

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_bans(
    ban_log: list[dict],
    attempts: list[Attempt],
    legit_attempts: list[Attempt],
    attack_end: float,
    syns_dropped: int | None = None,
) -> BanSummary:
    """`ban_log`: the server's (closebench/servers/bans.py Ban.to_dict());
    `attack_end`: Unix time."""
    in_force = [b for b in ban_log if b.get("t_effective") is not None]
    first_ban: dict[str, float] = {}
    for ban in sorted(in_force, key=lambda b: b["t_effective"]):
        first_ban.setdefault(ban["address"], ban["t_effective"])
    first_attempt: dict[str, float] = {}
    for attempt in attempts:
        if attempt.src in first_ban:
            first_attempt[attempt.src] = min(
                first_attempt.get(attempt.src, math.inf), attempt.t_syn
            )
    delays = [first_ban[a] - first_attempt[a] for a in first_attempt]
    before = [a for a in attempts if a.t_syn < first_ban.get(a.src, math.inf)]
    after = len(attempts) - len(before)
    time_banned = sum(max(0.0, attack_end - t) for t in first_ban.values())

    def refused(attempt: Attempt) -> bool:
        return attempt.http_status != 200 and any(
            b["address"] == attempt.src
            and b["t_detected"] <= attempt.t_syn < b["t_effective"] + b["duration_s"]
            for b in in_force
        )

    return BanSummary(
        bans=len(ban_log),
        banned_addresses=len(first_ban),
        longest_ban_s=max((b["duration_s"] for b in ban_log), default=None),
        time_to_ban_median_s=percentile(delays, 50),
        time_to_ban_max_s=max(delays, default=None),
        attempts_before_ban=len(before),
        attempts_after_ban=after,
        attempts_per_s_after_ban=after / time_banned if time_banned > 0 else None,
        syns_dropped=syns_dropped,
        legit_wrongly_refused=sum(refused(a) for a in legit_attempts),
    )
