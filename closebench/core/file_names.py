"""File names made from labels (trials, probe cases, scenarios): safe, and one file per label.

Cleaning a label can map two labels to one name (`a/b` and `a_b` both give `a_b`); two trials
writing one pcap at once would lose one capture and corrupt the other, so clashing names get a
number. Names are compared without case: a run directory may be unpacked on macOS or Windows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")
MAX_STEM = 100  # well inside a file system's 255 bytes, with room for a number and a suffix


def safe_stem(label: str, fallback: str = "trial") -> str:
    """`label` with anything but letters, digits and `_.=-` made `_`; never hidden, never empty."""
    return UNSAFE.sub("_", label).strip("_.")[:MAX_STEM] or fallback


def unique_names(labels: Sequence[str], suffix: str) -> list[str]:
    """One file name per label, in order; a name already given gets -2, -3..."""
    taken: set[str] = set()
    names = []
    for label in labels:
        stem = safe_stem(label)
        name, number = stem + suffix, 1
        while name.lower() in taken:
            number += 1
            name = f"{stem}-{number}{suffix}"
        taken.add(name.lower())
        names.append(name)
    return names
