"""The reading of a run, in sentences: what each trial cost the attacker and the defender, what to
beware of (caveats), and what the reader must know about the run as a whole.

Derived from the numbers alone: nothing in it is written for a particular strategy's outcome.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from closebench.defender.peers.notes import peer_note
from closebench.results.breaking_points import BROKE, bracket_text, status_of
from closebench.results.figures.palette import Palette
from closebench.results.placements import cpu_use_text
from closebench.results.report.columns import millis, outcome_counts, percent, worker_rows
from closebench.results.report.ranking import FD_NOISE, AxisResult
from closebench.results.run_directory import RunData, TrialData, is_number
from closebench.results.schema import ATTACKER_KEPT_UP
from closebench.results.verify import agreement_text
from closebench.servers.strategies import STRATEGIES, parse_spec

FEW_ATTEMPTS = 5


@dataclass
class TrialReading:
    name: str
    color: str
    error: str | None
    sentences: list[str]
    wins: list[str]
    caveats: list[str]


def read_trial(trial: TrialData, run: RunData, results: list[AxisResult]) -> TrialReading:
    color = Palette([t.name for t in run.trials]).color(trial.name)
    row = trial.row
    if not trial.ok:
        return TrialReading(trial.name, color, row.get("error"), [], [], _caveats(trial, run))
    wins = [r.axis.label for r in results if trial.name in r.winners and not r.all_tied]
    sentences = [_attacker_sentence(trial, run), _defender_sentence(row)]
    if row.get("legit_requests"):
        sentences.append(
            f"Legitimate clients: {percent(row['legit_success_rate'])} of "
            f"{row['legit_requests']} requests answered"
            + (
                f", median {millis(row['legit_latency_median_s'])} ms."
                if is_number(row.get("legit_latency_median_s"))
                else "."
            )
        )
    return TrialReading(trial.name, color, None, sentences, wins, _caveats(trial, run))


def _attacker_sentence(trial: TrialData, run: RunData) -> str:
    row = trial.row
    text = f"Attacker: {row['attempts']} attempts, {row['attempts_per_s']:.2f}/s"
    loudest = max(
        (t for t in run.trials if t.ok and is_number(t.row.get("attempts_per_s"))),
        key=lambda t: t.row["attempts_per_s"],
        default=None,
    )
    rate = row["attempts_per_s"]
    if loudest and loudest is not trial and rate > 0 and loudest.row["attempts_per_s"] >= 2 * rate:
        text += f" ({loudest.row['attempts_per_s'] / rate:.0f} times fewer than {loudest.name})"
    if is_number(row.get("runs_per_s")) and row.get("runs"):
        text += (
            f", from {row['runs']} command runs ({row['runs_per_s']:.2f}/s, "
            f"{row['attempts'] / row['runs']:.1f} connections each)"
        )
    if is_number(row.get("hang_median_s")):
        text += f", each hanging {row['hang_median_s']:.2f} s (median)"
    waits = row.get("connect_waits") or 0
    if waits and is_number(row.get("connect_wait_median_s")):
        text += (
            f"; {waits} of them sent no request, and count their wait to connect "
            f"(connect wait median {row['connect_wait_median_s']:.2f} s)"
        )
    text += f"; outcomes {outcome_counts(row.get('outcomes') or {})}"
    return text + (
        f"; {row.get('attacker_seconds_wasted') or 0:.1f} s wasted in all, first SYN to end "
        "of every attempt."
    )


def _defender_sentence(row: dict) -> str:
    if not is_number(row.get("fd_seconds")):
        return "Defender: not sampled."
    held = (
        "no fd held beyond noise"
        if row["fd_seconds"] < FD_NOISE
        else f"{row['fd_seconds']:.1f} fd-s held"
    )
    text = (
        f"Defender: {held} (peak {row['peak_fds']} fds), {row['cpu_seconds']:.2f} CPU s, "
        f"peak {row['peak_threads']} thread(s), {row['peak_rss_mb']:.1f} MiB, "
        f"{row['peak_orphans']} orphan socket(s) at peak"
    )
    ratio = row.get("wasted_per_fd_second")
    if row["fd_seconds"] >= FD_NOISE and is_number(ratio):
        text += f"; the attacker lost {ratio:.2f} s per defender fd-second"
    return text + "."


def _caveats(trial: TrialData, run: RunData) -> list[str]:
    notes = [check(trial, run) for check in CAVEATS]
    return [note for note in notes if note]


def _spec(trial: TrialData):
    try:
        return parse_spec(trial.row.get("strategy") or "")
    except ValueError:
        return None  # a user's own server command, or a strategy this version does not know


def _caveat_error(trial: TrialData, run: RunData) -> str | None:
    if trial.ok and not trial.row.get("complete", True):
        return "Interrupted: the figures cover the trial so far."
    return None


def _caveat_capability(trial: TrialData, run: RunData) -> str | None:
    spec = _spec(trial)
    if spec is None or spec.name != "repair":
        return None
    had = (run.meta.get("capabilities") or {}).get("CAP_NET_ADMIN")
    fallbacks = (trial.row.get("server_stats") or {}).get("repair_fallbacks") or 0
    text = "TCP_REPAIR needs CAP_NET_ADMIN in the server: " + (
        "this run had it." if had else "this run did not have it."
    )
    if fallbacks:
        text += f" {fallbacks} close(s) fell back to RST."
    return text


def _caveat_read_first(trial: TrialData, run: RunData) -> str | None:
    spec = _spec(trial)
    if spec is None or "read_first" not in spec.options or STRATEGIES[spec.name].peer:
        return None
    outcomes = trial.row.get("outcomes") or {}
    if spec.options["read_first"] is False:
        text = (
            "read_first=false acts at accept() on clients matched by address: a request that "
            "arrives later meets no socket and is answered with RST"
        )
        return text + (f" ({outcomes['rst']} RST here)." if outcomes.get("rst") else ".")
    # Silent without holding a socket: the socket is gone, so only reading first keeps a
    # request that arrives late from meeting no socket (and an RST).
    gone = is_number(trial.row.get("fd_seconds")) and trial.row["fd_seconds"] < FD_NOISE
    if gone and outcomes and outcomes.get("silent", 0) >= sum(outcomes.values()) / 2:
        return (
            "Silent because it reads the request first (read_first); acting at accept() "
            "instead lets a late request meet no socket and get an RST."
        )
    return None


def _caveat_peer(trial: TrialData, run: RunData) -> str | None:
    spec = _spec(trial)
    return peer_note(spec, trial.row) if spec else None


def _caveat_router(trial: TrialData, run: RunData) -> str | None:
    spec = _spec(trial)
    if spec is None or spec.name not in ("ttl-drop", "rst-ttl"):
        return None
    packet = "FIN" if spec.name == "ttl-drop" else "RST"
    ttl = spec.options.get("ttl", 1)
    outcomes = trial.row.get("outcomes") or {}
    told = outcomes.get("fin", 0) + outcomes.get("rst", 0)
    if outcomes and told > sum(outcomes.values()) / 2:
        where = "via a router" if trial.row.get("routed") else "with no router hop"
        return f"The TTL-{ttl} {packet} reached the attacker {where}: here it is a plain close."
    if trial.row.get("routed"):
        return (
            f"Silent only because a router hop drops the TTL-{ttl} {packet}; on a direct link "
            "it arrives."
        )
    return None


def _caveat_router_state(trial: TrialData, run: RunData) -> str | None:
    """What the stateful router remembered, next to what the attacker's kernel held."""
    row = trial.row
    tracked, established = row.get("peak_router_conntrack"), row.get("peak_router_established")
    if not is_number(tracked) or not is_number(established):
        return None
    costs = [a.get("attacker_cost") or {} for a in (row.get("attackers") or {}).values()]
    client = max((c.get("peak_by_state", {}).get("ESTABLISHED", 0) for c in costs), default=0)
    text = (
        f"The router tracked up to {tracked} connection(s) to the server, {established} of "
        "them established at peak"
    )
    if client:
        text += f", while the attacker host held up to {client} established socket(s)"
        if established < client / 2:
            text += ": the router forgot connections the attacker still waited on"
    return text + "."


def _caveat_orphans(trial: TrialData, run: RunData) -> str | None:
    orphans = trial.row.get("peak_orphans") or 0
    lasting = orphan_seconds(trial.samples)
    if orphans <= 0 or (trial.samples and lasting < FD_NOISE):
        return None  # an orphan for a moment after close() is every close's lot
    retrans = trial.row.get("retransmissions") or 0
    text = f"Kept up to {orphans} orphan socket(s) in the kernel ({lasting:.0f} orphan-seconds)"
    text += ", which no fd count shows"
    return text + (f"; {retrans} retransmitted segments." if retrans else ".")


def orphan_seconds(samples: list[dict[str, float]]) -> float:
    """Orphan sockets integrated over time, like fd-seconds."""
    return sum(a.get("orphans", 0) * (b["t"] - a["t"]) for a, b in itertools.pairwise(samples))


def _caveat_fds(trial: TrialData, run: RunData) -> str | None:
    row = trial.row
    ratio = row.get("wasted_per_fd_second")
    if not is_number(row.get("fd_seconds")) or row["fd_seconds"] < FD_NOISE:
        return None
    stats = row.get("server_stats") or {}
    nofile = (run.scenario.get("server") or {}).get("nofile")
    limit = f"RLIMIT_NOFILE ({nofile})" if nofile else "RLIMIT_NOFILE"
    if stats.get("refused_emfile"):
        return f"Ran out of fds: {stats['refused_emfile']} request(s) refused with 503."
    if stats.get("held"):
        return (
            f"Still held {stats['held']} socket(s) when the trial ended: they are never "
            f"released, so a long or concurrent attack exhausts {limit}."
        )
    if is_number(ratio) and ratio <= 1.5:
        return (
            "Holds an fd for about every second the attacker waits: a concurrent attacker "
            f"makes it run into {limit}."
        )
    return None


def _caveat_threads(trial: TrialData, run: RunData) -> str | None:
    if not trial.samples:
        return None
    idle = trial.samples[0].get("threads", 0)
    peak = trial.row.get("peak_threads") or 0
    if peak > idle:
        return f"Threads grew from {idle:.0f} to {peak}: a thread per held socket."
    return None


def _caveat_data_first(trial: TrialData, run: RunData) -> str | None:
    got = int(trial.attacks.data_first.sum())
    if got:
        return (
            f"{got} attempt(s) received response bytes before they ended: the attacker sees "
            "a live server."
        )
    return None


def _caveat_legit(trial: TrialData, run: RunData) -> str | None:
    rate = trial.row.get("legit_success_rate")
    if is_number(rate) and rate < 0.99:
        return f"The service suffered: only {percent(rate)} of legitimate requests were answered."
    return None


def _caveat_lost_workers(trial: TrialData, run: RunData) -> str | None:
    lost = [row for row in worker_rows([trial]) if row.lost]
    if not lost:
        return None
    which = "; ".join(f"{row.worker} ({row.lost}, {row.attempts} attempts kept)" for row in lost)
    return f"Locust worker(s) lost during the attack: {which}. The others attacked on."


CAVEATS = (
    _caveat_error,
    _caveat_lost_workers,
    _caveat_capability,
    _caveat_read_first,
    _caveat_peer,
    _caveat_router,
    _caveat_router_state,
    _caveat_orphans,
    _caveat_fds,
    _caveat_threads,
    _caveat_data_first,
    _caveat_legit,
)


@dataclass
class WireAgreement:
    """closebench verify's result as the report shows it: a verdict, a sentence, one row per
    trial."""

    ok: bool
    verified: bool  # False: verification could not run (nothing to verify, a failure)
    sentence: str
    rows: list[tuple[str, bool, str]]  # trial, ok, its sentence


def wire_agreement(run: RunData) -> WireAgreement | None:
    """None when the run was not verified (run --no-verify, or an older run)."""
    totals = run.summary.get("wire_agreement")
    if not isinstance(totals, dict):
        return None
    rows = [
        (t.name, bool(figures.get("ok")), agreement_text(figures))
        for t in run.trials
        if isinstance(figures := t.row.get("wire_agreement"), dict)
    ]
    verified = not totals.get("error")
    return WireAgreement(bool(totals.get("ok")), verified, agreement_text(totals), rows)


def run_notes(run: RunData) -> list[str]:
    """What a reader must know about the run as a whole before trusting its numbers."""
    notes = []
    if run.meta.get("stopped"):
        notes.append(f"The run stopped early: {run.meta['stopped']}.")
    if not run.complete:
        notes.append("The run is incomplete (interrupted, or a trial failed): see the rows.")
    failed = [t.name for t in run.trials if not t.ok]
    if failed:
        notes.append(f"No figures for: {', '.join(failed)} (their error is in the table).")
    few = [t.name for t in run.trials if t.ok and (t.row.get("attempts") or 0) < FEW_ATTEMPTS]
    if few:
        notes.append(
            f"Fewer than {FEW_ATTEMPTS} attacker attempts in {', '.join(few)}: their rates and "
            "hang times are rough; run for several client timeouts to measure them."
        )
    durations = [t.row["duration_s"] for t in run.trials if is_number(t.row.get("duration_s"))]
    planned = run.scenario.get("duration")
    if is_number(planned) and durations and max(durations) < 0.9 * planned:
        notes.append(
            f"The trials ran at most {max(durations):.0f} s though scenario.toml says "
            f"{planned:g} s (a --duration override)."
        )
    limited = [t for t in run.trials if t.ok and t.row.get("harness_limited")]
    if limited:
        notes.append(
            "Harness-limited (the attacking side, not the server, set the pace: the step is "
            "inconclusive): "
            + "; ".join(f"{t.name}: {t.row.get('harness_limited_reason')}" for t in limited)
            + "."
        )
    notes += processes_notes(run)
    notes += placement_notes(run)
    busy = [t for t in run.trials if t.ok and t.row.get("cpu_foreign_reason")]
    if busy:
        notes.append(
            "Machine busy (something outside the run took a real share of a side's CPUs: the "
            "step is inconclusive): "
            + "; ".join(f"{t.name}: {t.row.get('cpu_foreign_reason')}" for t in busy)
            + "."
        )
    return notes + run.problems


def processes_notes(run: RunData) -> list[str]:
    """How many processes each packet attacker ran as in each step, and why (the runner re-runs
    a step with one more while one set the pace: trials/attacker_processes.py). Steps where one
    kept up are counted, the others listed."""
    with_packets = [t for t in run.trials if t.ok and t.row.get("attacker_processes")]
    if not with_packets:
        return []
    kept_up = [
        t for t in with_packets if t.row.get("attacker_processes_reason") == ATTACKER_KEPT_UP
    ]
    listed = [
        f"{t.name}: {t.row.get('attacker_processes_reason')}"
        for t in with_packets
        if t not in kept_up
    ]
    if kept_up:
        listed.append(f"{len(kept_up)} of {len(with_packets)} steps: {ATTACKER_KEPT_UP}")
    return [
        "Packet attacker processes (each its own engine, on the attackers' CPUs): "
        + "; ".join(listed)
        + "."
    ]


def placement_notes(run: RunData) -> list[str]:
    """Which CPUs each side had (summary.json `placement`), and what each trial used of them."""
    if run.placement is None:
        return ["CPUs: not recorded (a run from before closebench placed the sides)."]
    notes = [f"CPUs: {run.placement.get('text')}."]
    for trial in run.trials:
        text = cpu_use_text(trial.row.get("cpu_use"))
        if trial.ok and text:
            notes.append(f"CPU use, {trial.name}: {text}.")
    return notes


def breaking_rows(run: RunData, palette: Palette) -> list[dict]:
    """The breaking-point table of a sweep: one row per series, its bracket and status."""
    rows = []
    for series, point in run.breaking_points.items():
        status = status_of(point)
        rows.append(
            {
                "series": series,
                "color": palette.color(series) if series in palette.styles else "#999",
                "where": bracket_text(point),
                "status": status,
                "broke": status == BROKE,
                "reason": point["reason"],
            }
        )
    return rows


def breaking_rule(run: RunData) -> str:
    """The thresholds a sweep broke on, in a sentence."""
    sweep = run.sweep
    if sweep is None:
        return ""
    success = sweep.get("break_legit_success")
    latency = sweep.get("break_latency_s")
    errors = sweep.get("break_server_errors")
    parts = []
    if is_number(success):
        parts.append(f"the legitimate client's success fell below {success:.1%}")
    if is_number(latency):
        parts.append(f"its p95 latency rose above {latency:g} s")
    if is_number(errors):
        parts.append(f"the server erred more than {errors:g} times (EMFILE refusals, 5xx)")
    steps = ", ".join(f"{s:g}" for s in sweep.get("steps", []) if is_number(s))
    return (
        f"Each strategy over {sweep['axis']} {steps}: the first step at which "
        + ", or ".join(parts)
        + ". A step the harness limited, or on CPUs something outside the run kept busy, is "
        "inconclusive whatever the server did: the bracket says up to where the strategy held "
        "and from where it broke or could not be told."
    )
