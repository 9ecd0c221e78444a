"""A product's `[products.nvs]`: where an ESP32 unit's factory data goes and what it holds
(the esptool driver writes it as an NVS partition image). Plain values, checked at start.

    [products.nvs]
    offset = 0x340000        # the factory partition in the unit's partition table
    size = 0x6000
    namespace = "fctry"
    cert_namespace = "fctry_cert"  # a pre-claimed product's certificate files (esp_certs.py)
    entries = [{ key = "serial_no", type = "string", value = "{uci}" }]

`uci` and `product` (strings) are always written, then each product field with the NVS type
its value has, then `entries`: value is a format string over {uci}, {product}, {name},
{model} and the field names.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from factory.config.table import Table

NVS_TYPES = ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "string", "hex2bin",
             "base64")
_RANGES = {"u8": (0, 2**8 - 1), "i8": (-2**7, 2**7 - 1), "u16": (0, 2**16 - 1),
           "i16": (-2**15, 2**15 - 1), "u32": (0, 2**32 - 1), "i32": (-2**31, 2**31 - 1),
           "u64": (0, 2**64 - 1), "i64": (-2**63, 2**63 - 1)}
MAX_KEY = 15  # NVS keys and namespace names: at most 15 bytes
PAGE = 0x1000
MIN_SIZE = 0x3000  # a read/write NVS partition: two pages and the reserved one
Field = str | int | float | bool


@dataclass(frozen=True)
class NvsEntry:
    key: str
    type: str  # one of NVS_TYPES
    value: str  # a format string (see the module's docstring)


@dataclass(frozen=True)
class NvsLayout:
    offset: int = 0x340000  # ESP RainMaker's fctry partition in its 4 MiB tables
    size: int = 0x6000
    namespace: str = "fctry"
    cert_namespace: str = "fctry_cert"
    entries: tuple[NvsEntry, ...] = ()


def key_problem(key: str) -> str:
    """Why `key` cannot be an NVS key ("" when it can): each product field is written as one."""
    size = len(key.encode())
    if size <= MAX_KEY:
        return ""
    shorter = key.encode()[:MAX_KEY].decode(errors="ignore")
    return (f"is {size} bytes, and an NVS key is at most {MAX_KEY} (esptool units hold each "
            f"field as one): shorten it, e.g. to {shorter!r}")


def nvs_type(value: Field) -> str:
    """The NVS type a product field is written as."""
    if isinstance(value, bool):
        return "u8"
    if isinstance(value, int):
        return "i32" if _RANGES["i32"][0] <= value <= _RANGES["i32"][1] else "i64"
    return "string"  # NVS has no floats: written as their text


def in_range(kind: str, value: int) -> bool:
    low, high = _RANGES[kind]
    return low <= value <= high


def read_nvs(table: Table, fields: Mapping[str, Field]) -> NvsLayout:
    """The `[products.nvs]` table (defaults when absent)."""
    default = NvsLayout()
    offset = table.get("offset", int, default.offset)
    size = table.get("size", int, default.size)
    if offset < 0 or offset % PAGE:
        raise table.error("offset", f"must be a multiple of {PAGE:#x} (a flash sector), "
                                    f"got {offset:#x}")
    if size < MIN_SIZE or size % PAGE:
        raise table.error("size", f"must be a multiple of {PAGE:#x} and at least "
                                  f"{MIN_SIZE:#x} (NVS pages), got {size:#x}")
    namespace = table.get("namespace", str, default.namespace)
    if not 1 <= len(namespace.encode()) <= MAX_KEY or not namespace.isprintable():
        raise table.error("namespace", f"must be 1-{MAX_KEY} printable bytes")
    cert_namespace = table.get("cert_namespace", str, default.cert_namespace)
    if not 1 <= len(cert_namespace.encode()) <= MAX_KEY or not cert_namespace.isprintable():
        raise table.error("cert_namespace", f"must be 1-{MAX_KEY} printable bytes")
    if cert_namespace == namespace:
        raise table.error("cert_namespace", f"must differ from namespace ({namespace!r}): the "
                                            "certificate files go beside the factory data")
    placeholders = {"uci", "product", "name", "model", *fields}
    entries: list[NvsEntry] = []
    for i, raw in enumerate(table.get("entries", list, [], what="an array of tables")):
        where = f"entries[{i}]"
        if not isinstance(raw, dict):
            raise table.error(where, "must be a table {key, type, value}")
        item = Table(table.source, table.key(where), raw)
        key, kind, value = item.get("key", str), item.get("type", str), item.get("value", str)
        item.finish()
        if not 1 <= len(key.encode()) <= MAX_KEY or not key.isprintable():
            raise item.error("key", f"must be 1-{MAX_KEY} printable bytes, got {key!r}")
        if key in ("uci", "product") or key in fields:
            raise item.error("key", f"{key!r} is written by the station already")
        if kind not in NVS_TYPES:
            raise item.error("type", f"must be one of {', '.join(NVS_TYPES)}, got {kind!r}")
        try:
            names = {n for _, n, _, _ in string.Formatter().parse(value) if n is not None}
        except ValueError as exc:
            raise item.error("value", f"is not a format string: {exc}") from exc
        if names - placeholders:
            raise item.error("value", f"unknown placeholder {{{sorted(names - placeholders)[0]}}}"
                                      f"; use {', '.join(sorted(placeholders))}")
        entries.append(NvsEntry(key, kind, value))
    table.finish()
    return NvsLayout(offset, size, namespace, cert_namespace, tuple(entries))
