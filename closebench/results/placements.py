"""Two runs' CPU placements (summary.json `placement`, lab/cpus.py): `compare` and `check` warn when
they differ, as the same strategy measured with its server on other CPUs (or sharing them with
the attack) is not the same measurement."""

from __future__ import annotations


def placement_warning(cpus_a: object, cpus_b: object) -> str | None:
    """One line when two runs (their summary.json `placement`) ran with different placements; None
    when they match. A run from before placements were recorded counts as unknown."""
    a, b = _placement_text(cpus_a), _placement_text(cpus_b)
    if a == b:
        return None
    return f"warning: the runs placed their sides differently (A: {a}; B: {b}): figures may move"


def _placement_text(cpus_document: object) -> str:
    if not isinstance(cpus_document, dict) or not isinstance(cpus_document.get("text"), str):
        return "placement not recorded"
    return cpus_document["text"]


SIDE_NAMES = {"defender": "the defender's", "attackers": "the attackers'", "both": "the shared"}


def cpu_use_text(cpu_use: object) -> str | None:
    """A trial's row `cpu_use` in one line: the placement, then each side's CPUs as shares of
    their capacity over the attack. None: not measured (a summary/1 run)."""
    if not isinstance(cpu_use, dict) or not isinstance(cpu_use.get("placement"), dict):
        return None
    parts = [str(cpu_use["placement"].get("text"))]
    for side, name in SIDE_NAMES.items():
        share = cpu_use.get(side)
        if isinstance(share, dict):
            parts.append(
                f"{name} CPUs ({share.get('cpus')}): {_pct(share.get('busy_share'))} busy, "
                f"{_pct(share.get('own_share'))} this run's, "
                f"{_pct(share.get('foreign_share'))} outside it, "
                f"softirq {_pct(share.get('softirq_share'))}"
            )
    return "; ".join(parts)


def _pct(value: object) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "?"
