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
from typing import TypeGuard

import dpkt

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
