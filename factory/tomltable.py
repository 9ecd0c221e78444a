"""Reading one table of a TOML file with typed keys and a typo check at the end; each kind of
file (station config, label template) says in `fail` how its errors name the place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
          dict: "a table", list: "an array"}


def describe(kind: type | tuple[type, ...]) -> str:
    """A type as the error messages say it: "an integer", "a number", "a string or a table"."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(dict.fromkeys(_NAMES.get(k, k.__name__) for k in kinds))


class TomlTable:
    """One table being read: `get` checks each key's type, `finish` refuses unknown keys."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.used: set[str] = set()

    def fail(self, key: str, reason: str) -> Exception:
        """The error for `key` (overridden: it names the file and where in it)."""
        return ValueError(f"{key}: {reason}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *,
            what: str = "") -> Any:
        """The value of `key`, of type `kind`; `default` when absent (required if none)."""
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; a port of `true` is still a mistake.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
            raise self.fail(key, f"must be {what or describe(kind)}, "
                                 f"got {describe(type(value))}")
        return value

    def finish(self) -> None:
        """Refuse keys nobody asked for: most are typos of a real setting."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "is not a known setting (a typo?)")
