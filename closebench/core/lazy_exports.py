"""A package's names loaded from its modules on first use (PEP 562's module __getattr__), so that
importing the package stays light for the programs that need only part of it."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """The module `__getattr__` of `package`: each name of `exports` from its module there."""

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
