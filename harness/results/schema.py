"""Rows of a summary.json read back, checked against the row's schema (summary.TrialRow).

A run directory may have been edited, cut short or written by another version. A row that is no
object or has no trial name is left out; a field of the wrong type (text for a number, NaN, a
list for the outcome counts) is dropped and the row marked failed with the reason, since its
other figures cannot be trusted either; a missing field takes the schema's default, as rows of
older versions lack the fields added since. Each problem is one line for the reader.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache

from harness.core.summary import TrialRow


@dataclasses.dataclass
class CheckedRows:
    rows: list[dict]
    problems: list[str]


def check_rows(raw_rows: list, source: str = "summary.json") -> CheckedRows:
    checked = CheckedRows([], [])
    for number, raw in enumerate(raw_rows, 1):
        if not isinstance(raw, dict) or not isinstance(raw.get("trial"), str) or not raw["trial"]:
            checked.problems.append(f"{source}: row {number} has no trial name: left out")
            continue
        row, wrong = _checked_row(raw)
        for name in wrong:
            checked.problems.append(
                f"{source}: trial {row['trial']!r}: {name} is {raw[name]!r}, not "
                f"{_type_text(_hints()[name])}: the row is shown as failed"
            )
        if wrong and not row.get("error"):
            row["error"] = f"summary.json has a wrong {wrong[0]} for this trial"
            row["complete"] = False
        checked.rows.append(row)
    return checked


def _checked_row(raw: dict) -> tuple[dict, list[str]]:
    row = dict(raw)  # fields this version does not know are kept as they are
    wrong = []
    for field in dataclasses.fields(TrialRow):
        hint = _hints()[field.name]
        if field.name not in raw:
            row[field.name] = _default(field)
        elif not _fits(raw[field.name], hint):
            wrong.append(field.name)
            row[field.name] = _default(field) if _optional(hint) else _empty(field)
    return row, wrong


@cache
def _hints() -> dict[str, object]:
    return typing.get_type_hints(TrialRow)


def _default(field: dataclasses.Field) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return False if _hints()[field.name] is bool else None


def _empty(field: dataclasses.Field) -> object:
    """A wrong value's stand-in where the schema allows no null: nothing measured."""
    hint = _hints()[field.name]
    return {} if typing.get_origin(hint) is dict or hint is dict else None


def _optional(hint: object) -> bool:
    return type(None) in typing.get_args(hint)


def _fits(value: object, hint: object) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            return False
        return hint is float or float(value).is_integer()
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            return False
        arguments = typing.get_args(hint)
        return not arguments or all(
            isinstance(key, str) and _fits(item, arguments[1]) for key, item in value.items()
        )
    return True  # a kind of field this check does not know: taken as it is


def _type_text(hint: object) -> str:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    arms = [arm for arm in typing.get_args(hint) if arm is not type(None)] if union else [hint]
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
    text = " or ".join(names.get(arm, "an object") for arm in arms)  # type: ignore[call-overload]
    return text + (" or null" if _optional(hint) else "")
