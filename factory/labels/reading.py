"""Reading template files: TOML tables whose every error names the file and the element."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from factory.labels.errors import TemplateError


class Fields:
    """Reads one TOML table of a template, naming the file and element in every error."""

    def __init__(self, source: Path, element: str, data: Any, unit: float = 1.0) -> None:
        self.source, self.element, self.unit = source, element, unit
        if not isinstance(data, dict):
            raise self.error("must be a table")
        self.data: Mapping[str, Any] = data
        self.used: set[str] = set()

    def error(self, reason: str) -> TemplateError:
        return TemplateError(self.source, self.element, reason)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.error(f"{key}: is required")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise self.error(f"{key}: must be {_describe(kind)}, got {value!r}")
        return value

    def number(self, key: str, default: float | None = None, *, low: float = 0.0) -> float:
        value = float(self.get(key, (int, float), ... if default is None else default))
        if not value >= low:
            raise self.error(f"{key}: must be at least {low:g}, got {value:g}")
        return value

    def length(self, key: str, default: float | None = None) -> float:
        """A length in the template's unit, returned in mm."""
        return self.number(key, default) * self.unit

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.get(key, str, default)
        if value not in options:
            raise self.error(f"{key}: must be one of {', '.join(options)}, got {value!r}")
        return cast(str, value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(f"{unknown[0]}: is not a known setting (a typo?)")


def _describe(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", list: "an array",
             dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if set(kinds) == {int, float}:
        return "a number"
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def read_toml(source: Path) -> dict[str, Any]:
    """A template file's TOML, or a TemplateError saying why it cannot be read."""
    try:
        return tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(source, "", f"cannot be read: {exc.strerror}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(source, "", f"is not valid TOML: {exc}") from exc
