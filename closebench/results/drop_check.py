"""verify's check of the xdp-drop and tc-drop counters: the SYNs the BPF program says it dropped
against the SYNs (retransmissions included) that the attacker-side capture shows leaving a banned
address while its ban was in force. They must agree within 1% (one SYN at least: a SYN in flight
as the map was written is counted by the program but captured before the ban's time).

It reads the trial's row of summary.json (drops_by_layer, ban_windows) and its pcap with dpkt,
independently of the records.
"""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path
from typing import TypeGuard, TypeVar

import dpkt

from closebench.core.file_names import unique_names
from closebench.results.run_directory import PCAP_DIR

T = TypeVar("T")

TOLERANCE = 0.01  # of the captured SYNs
BPF_LAYERS = ("xdp", "tc")


def drop_check(row: dict, pcap: Path) -> dict | None:
    """{layer, counted, on_wire, ok} for a trial whose strategy dropped with a BPF program and
    banned; None for the others."""
    drops = row.get("drops_by_layer")
    windows = _windows(row.get("ban_windows"))
    if not isinstance(drops, dict) or not windows:
        return None
    layer = next((name for name in BPF_LAYERS if isinstance(drops.get(name), int)), None)
    if layer is None:
        return None
    counted = drops[layer]
    on_wire = syns_in_windows(pcap, windows)
    return {"layer": layer, "counted": counted, "on_wire": on_wire, "ok": agrees(counted, on_wire)}


def add_drop_checks(agreement: T, directory: Path, rows: object) -> T:
    """Each trial of a verify agreement (verify.RunAgreement) with its row among summary.json's
    `rows` gets its drop check (`drops`), read from the run directory's pcap of that trial."""
    named = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    by_trial = {row.get("trial"): row for row in named}
    pcaps = dict(zip(by_trial, unique_names([str(t) for t in by_trial], ".pcap"), strict=True))
    for trial in getattr(agreement, "trials", []):
        row = by_trial.get(trial.trial)
        if row is not None and trial.error is None and trial.trial in pcaps:
            trial.drops = drop_check(row, directory / PCAP_DIR / pcaps[trial.trial])
    return agreement


def drop_texts(figures: dict) -> list[str]:
    """The drop checks of a wire_agreement dict (a trial's `drops`, or a run's `drop_counters`)
    in words."""
    drops = figures.get("drops")
    checks = [drops] if isinstance(drops, dict) else figures.get("drop_counters") or []
    return [drop_text(check) for check in checks if isinstance(check, dict)]


def drop_text(check: dict) -> str:
    """One drop counter check in words."""
    verdict = "agree" if check.get("ok") else "DISAGREE (beyond 1%)"
    return (
        f"the {check.get('layer')} program counted {check.get('counted')} SYNs dropped, the "
        f"capture shows {check.get('on_wire')} sent while banned: {verdict}"
    )


def agrees(counted: int, on_wire: int) -> bool:
    return abs(counted - on_wire) <= max(1.0, TOLERANCE * on_wire)


def _windows(raw: object) -> dict[str, list[tuple[float, float]]]:
    """address -> [(from, until)] of the row's ban_windows (entries that do not fit left out)."""
    found: dict[str, list[tuple[float, float]]] = {}
    if not isinstance(raw, list):
        return found
    for window in raw:
        if not isinstance(window, dict) or not isinstance(window.get("address"), str):
            continue
        start, end = window.get("from"), window.get("until")
        if _number(start) and _number(end):
            address = str(ipaddress.ip_address(window["address"]))
            found.setdefault(address, []).append((start, end))
    return found


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def syns_in_windows(pcap: Path, windows: dict[str, list[tuple[float, float]]]) -> int:
    """SYNs without ACK (retransmissions included) in an Ethernet capture whose source is a
    banned address, sent while its ban was in force."""
    count = 0
    with open(pcap, "rb") as handle:
        for t, frame in dpkt.pcap.Reader(handle):
            source = _syn_source(frame)
            if source is None:
                continue
            if any(start <= t < end for start, end in windows.get(source, ())):
                count += 1
    return count


def _syn_source(frame: bytes) -> str | None:
    """The source address of a SYN (no ACK) in an Ethernet frame; None for anything else."""
    try:
        ip = dpkt.ethernet.Ethernet(frame).data
    except dpkt.UnpackError:
        return None
    tcp = getattr(ip, "data", None)
    if not isinstance(tcp, dpkt.tcp.TCP):
        return None
    if not tcp.flags & dpkt.tcp.TH_SYN or tcp.flags & dpkt.tcp.TH_ACK:
        return None
    return str(ipaddress.ip_address(ip.src))
