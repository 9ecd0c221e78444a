"""Reading a station config's tables: the error that names the file, the key and the reason,
and the checks more than one table shares (ids, paths, seconds, networks)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from factory.tomltable import TomlTable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# \Z, not $: `$` also matches before a final newline, so "line-1\n" passed as an id.
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]+(\[[0-9]+\])?")  # a key, or a dotted path or index


class ConfigError(ValueError):
    """A config file that cannot be used: which file, which key, and why."""

    def __init__(self, source: str | Path, key: str, reason: str) -> None:
        self.source, self.key, self.reason = str(source), key, reason
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")


class Table(TomlTable):
    """Reads one table of a station config, remembering its dotted path for errors."""

    def __init__(self, source: Path, path: str, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.source, self.path = source, path

    def key(self, name: str) -> str:
        # A key that is not a plain name ("", "a b", one with a newline) is shown quoted, as
        # TOML writes it, so the message still points at it.
        if not _KEY_NAME.fullmatch(name):
            name = json.dumps(name)
        return f"{self.path}.{name}" if self.path else name

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.source, self.key(key), reason)

    error = fail

    def table(self, name: str, *, required: bool = False) -> Table:
        value = self.get(name, dict, ... if required else {}, what="a table")
        return Table(self.source, self.key(name), value)


def config_path(source: Path, text: str) -> Path:
    """A path from the config: relative ones are taken from the config file's folder."""
    path = Path(text)
    return path if path.is_absolute() else Path(os.path.abspath(source.parent / path))


def seconds(table: Table, name: str, default: float) -> float:
    """A duration key: a number of seconds above 0, at most an hour."""
    value = float(table.get(name, (int, float), default))
    if not 0 < value <= 3600:
        raise table.error(name, f"must be a number of seconds above 0, got {value:g}")
    return value


def network(table: Table, index: int, value: Any, key: str = "networks") -> Network:
    """Item `index` of the array `key`: a CIDR network."""
    if not isinstance(value, str):
        raise table.error(f"{key}[{index}]", "must be a CIDR string such as '10.0.0.0/8'")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise table.error(f"{key}[{index}]", f"{value!r} is not a CIDR network: {exc}") from exc
