"""Old names kept for one release: each use warns with ``DeprecationWarning`` and names the
new one (the README's "Deprecated names" lists them).

Three kinds of old name, one helper each: a module attribute (:func:`module_aliases`, a
PEP 562 ``__getattr__``), an object attribute (:func:`renamed_attribute`) and a keyword
argument (:func:`renamed_kwarg`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from precision_gym.error import ConfigError

__all__ = ["module_aliases", "renamed_attribute", "renamed_kwarg", "warn_renamed"]


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (``stacklevel`` 3: the caller's
    caller, i.e. the user's line)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release: use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def module_aliases(
    module: str, aliases: Mapping[str, str], namespace: Mapping[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves ``aliases`` (old name -> new name, both in
    ``namespace``, the module's ``globals()``) with a warning."""

    def __getattr__(name: str) -> Any:
        if name in aliases:
            warn_renamed(f"{module}.{name}", f"{module}.{aliases[name]}")
            return namespace[aliases[name]]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def renamed_attribute(old: str, new: str) -> property:
    """A property ``old`` that reads and writes attribute ``new``, warning at each use."""

    def fget(self: Any) -> Any:
        warn_renamed(f"{type(self).__name__}.{old}", new)
        return getattr(self, new)

    def fset(self: Any, value: Any) -> None:
        warn_renamed(f"{type(self).__name__}.{old}", new)
        setattr(self, new, value)

    return property(fget, fset, doc=f"Deprecated alias of ``{new}``.")


def renamed_kwarg(
    where: str, old: str, old_value: Any, new: str, new_value: Any, default: Any = None
) -> Any:
    """The value of keyword argument ``new`` of ``where``: ``new_value``, or ``old_value``
    with a warning when the caller passed the old name (``old_value`` is not None).
    ``default``: the new argument's default, to refuse a call that passes both names."""
    if old_value is None:
        return new_value
    if new_value is not default:
        raise ConfigError(
            f"{where} got both {new}= and its deprecated name {old}=: expected only {new}="
        )
    warn_renamed(f"{where}({old}=...)", f"{new}=...", stacklevel=4)
    return old_value
