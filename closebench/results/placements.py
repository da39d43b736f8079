"""Two runs' CPU placements (summary.json `cpus`, lab/cpus.py): `compare` and `check` warn when
they differ, as the same strategy measured with its server on other CPUs (or sharing them with
the attack) is not the same measurement."""

from __future__ import annotations


def placement_warning(cpus_a: object, cpus_b: object) -> str | None:
    """One line when two runs (their summary.json `cpus`) ran with different placements; None
    when they match. A run from before placements were recorded counts as unknown."""
    a, b = _placement_text(cpus_a), _placement_text(cpus_b)
    if a == b:
        return None
    return f"warning: the runs placed their sides differently (A: {a}; B: {b}): figures may move"


def _placement_text(cpus_document: object) -> str:
    if not isinstance(cpus_document, dict) or not isinstance(cpus_document.get("text"), str):
        return "placement not recorded"
    return cpus_document["text"]
