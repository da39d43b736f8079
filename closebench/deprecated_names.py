"""The import names of closebench 0.1 (`harness.*`, `servers.*`), kept for one release.

A checkout keeps two tiny packages, harness/ and servers/, that call `alias()`: importing any
module under an old name warns once and gives the module itself under its new name (the same
object, so classes and module state are shared). `python -m servers.reference` still runs. The
wheel ships neither: an installed closebench has one top-level package. CHANGELOG.md says how
to move.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import CodeType, ModuleType


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `old.x.y` as `new.x.y`."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def _new_name(self, fullname: str) -> str | None:
        if fullname == self.old or fullname.startswith(self.old + "."):
            return self.new + fullname[len(self.old) :]
        return None

    def find_spec(self, fullname, path=None, target=None):
        new = self._new_name(fullname)
        if new is None:
            return None
        real = importlib.util.find_spec(new)
        if real is None:
            return None
        package = real.submodule_search_locations is not None
        return importlib.util.spec_from_loader(fullname, self, is_package=package)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # a placeholder: exec_module puts the real module in its place

    def exec_module(self, module: ModuleType) -> None:
        new = self._new_name(module.__name__)
        assert new is not None
        _warn(module.__name__, new)
        # The import system returns what sys.modules holds once this returns: the real module.
        sys.modules[module.__name__] = importlib.import_module(new)

    def get_code(self, fullname: str) -> CodeType | None:
        """For `python -m old.module` (runpy runs the code of the module's new name)."""
        new = self._new_name(fullname)
        assert new is not None
        _warn(fullname, new)
        spec = importlib.util.find_spec(new)
        assert spec is not None and isinstance(spec.loader, importlib.abc.InspectLoader)
        return spec.loader.get_code(new)


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is now {new}: the old name goes in the next release (see CHANGELOG.md)",
        FutureWarning,  # shown by default: the users of these names run commands, not tests
        stacklevel=3,
    )


def alias(old: str, new: str) -> ModuleType:
    """Make `old` and every module under it import as `new`; return the new top module."""
    if not any(isinstance(f, _Alias) and f.old == old for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias(old, new))
    _warn(old, new)
    return importlib.import_module(new)
