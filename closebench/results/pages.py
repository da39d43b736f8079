"""The Jinja environment of closebench's HTML pages (templates/): the report and compare's page."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).resolve().parent / "templates"


def environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value from a run is escaped: trial names, errors, TOML
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
