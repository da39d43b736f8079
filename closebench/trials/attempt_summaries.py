"""What a trial's attempts cost the attacker, per attacker and all together: from the records in
memory (`closebench attack`, tests), or from the trial's attempts file, read in columns, when they
were streamed there (`closebench run`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc

from closebench.core.outcomes import LEGIT_CLIENT, Attempt
from closebench.core.summary import SUMMARY_COLUMNS, AttackSummary, summarize, summarize_columns
from closebench.results.records import read_table, table_columns


@dataclass(frozen=True)
class TrialSummaries:
    """Each attacker's summary, by name in the scenario's order, and all of them together."""

    by_attacker: dict[str, AttackSummary]
    overall: AttackSummary | None  # None: made from the records in memory (TrialResult)


def overall_summary(
    summaries: dict[str, AttackSummary], columns: dict, duration_s: float
) -> AttackSummary:
    """Every attacker's attempts together; runs summed over the command attackers."""
    runs = [s.runs for s in summaries.values() if s.runs is not None]
    return summarize_columns("all", columns, duration_s, {"runs": sum(runs)} if runs else None)


def memory_summaries(
    attempts: list[Attempt], names: list[str], costs: dict, duration: float
) -> TrialSummaries:
    """Each attacker's summary (`names`: the attackers in the scenario's order)."""
    by_attacker: dict[str, list[Attempt]] = {name: [] for name in names}
    for attempt in attempts:
        by_attacker.setdefault(attempt.attacker, []).append(attempt)
    summaries = {
        name: summarize(name, records, duration, costs.get(name))
        for name, records in by_attacker.items()
    }
    return TrialSummaries(summaries, None)


def file_summaries(path: Path, names: list[str], costs: dict, duration: float) -> TrialSummaries:
    """Each attacker's summary and all of them together, from a trial's attempts file (the
    legitimate clients' records left out)."""
    table = read_table(path, ["attacker", *SUMMARY_COLUMNS])
    names = [*names, *(n for n in table["attacker"].unique().to_pylist() if n not in names)]
    summaries = {}
    for name in names:
        if name != LEGIT_CLIENT:
            columns = table_columns(table.filter(pc.equal(table["attacker"], name)))
            summaries[name] = summarize_columns(name, columns, duration, costs.get(name))
    attacks = table.filter(pc.not_equal(table["attacker"], LEGIT_CLIENT))
    return TrialSummaries(summaries, overall_summary(summaries, table_columns(attacks), duration))
