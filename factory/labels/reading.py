"""Reading template files: TOML tables whose every error names the file and the element."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, cast

from factory.labels.errors import TemplateError
from factory.tomltable import TomlTable


class Fields(TomlTable):
    """Reads one TOML table of a template, naming the file and element in every error."""

    def __init__(self, source: Path, element: str, data: Any, unit: float = 1.0) -> None:
        self.source, self.element, self.unit = source, element, unit
        if not isinstance(data, dict):
            raise self.error("must be a table")
        super().__init__(data)

    def error(self, reason: str) -> TemplateError:
        return TemplateError(self.source, self.element, reason)

    def fail(self, key: str, reason: str) -> TemplateError:
        return self.error(f"{key}: {reason}")

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


def read_toml(source: Path) -> dict[str, Any]:
    """A template file's TOML, or a TemplateError saying why it cannot be read."""
    try:
        return tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(source, "", f"cannot be read: {exc.strerror}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(source, "", f"is not valid TOML: {exc}") from exc
