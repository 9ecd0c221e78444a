"""The [[products]] a station issues: what a unit is, how it is claimed, what its label says."""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

from factory.config.nvs import NvsLayout, key_problem, read_nvs
from factory.config.table import ID, ConfigError, Table, seconds

ClaimMode = Literal["user", "pre"]
CLAIM_MODES: tuple[ClaimMode, ...] = ("user", "pre")
# Who gives a unit its UCI: the station's fixtures, or the unit's own agent asking
# POST /ioto/serialize (then a fixture, if any, only reads the agent's device file back).
SerializedBy = Literal["station", "agent"]
SERIALIZED_BY: tuple[SerializedBy, ...] = ("station", "agent")
# Whether an agent-serialized unit must name its hardware (mac or hardware_id): without one
# every boot of the agent gets a new UCI and a new label.
AgentIdentity = Literal["required", "optional"]
AGENT_IDENTITY: tuple[AgentIdentity, ...] = ("required", "optional")
QR_PLACEHOLDERS = frozenset({"uci", "human", "product", "model", "name"})
# Keys the station itself writes into device.json5; a product may not override them.
RESERVED_FIELDS = frozenset({"id", "product", "name", "model", "description"})
_FIELD_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    model: str = ""
    description: str = ""
    label: str = ""  # label template name in the labels folder, without .toml
    claim: ClaimMode = "user"
    fields: Mapping[str, str | int | float | bool] = field(
        default_factory=lambda: MappingProxyType({})
    )
    qr: str = "{uci}"  # what the label's QR code holds; placeholders in QR_PLACEHOLDERS
    # claim = "pre": the account units are pre-claimed for, and how long a fixture waits
    # for a unit's certificate before asking for the unit to be plugged in again later.
    account: str = ""
    preclaim_wait: float = 30.0
    # claim = "user": a per-unit claim secret printed on the label, valid this many days
    # (0: no secret; the UCI alone claims the unit).
    claim_secret_days: int = 0
    serialized_by: SerializedBy = "station"
    agent_identity: AgentIdentity = "required"
    scan_check: bool = False  # every fixture of it checks the label on the unit by a scan
    nvs: NvsLayout = field(default_factory=NvsLayout)  # esptool units' factory partition


def read_products(root: Table) -> tuple[Product, ...]:
    """The file's [[products]], each id once."""
    source = root.source
    products_raw = root.get("products", list, [], what="an array of tables ([[products]])")
    found = tuple(_product(source, i, p) for i, p in enumerate(products_raw))
    seen: set[str] = set()  # product ids
    for i, product in enumerate(found):
        if product.id in seen:
            raise ConfigError(source, f"products[{i}].id", f"{product.id!r} is defined twice")
        seen.add(product.id)
    return found


def _device_text(table: Table, key: str, text: str) -> str:
    """A string that goes into device.json5 as it is: no control characters (the Ioto agent's
    parser ends a string at NUL; escapes it reads wrongly or not at all)."""
    bad = next((c for c in text if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise table.error(key, f"contains the control character {bad!r} (U+{ord(bad):04X}); "
                               "device.json5 takes printable text only")
    return text


def _product(source: Path, index: int, value: Any) -> Product:
    if not isinstance(value, dict):
        raise ConfigError(source, f"products[{index}]", "must be a table ([[products]])")
    table = Table(source, f"products[{index}]", value)
    product_id = table.get("id", str)
    if not ID.match(product_id):
        raise table.error("id", "must be 1-64 letters, digits, '.', '_' or '-'")
    name = _device_text(table, "name", table.get("name", str))
    model = _device_text(table, "model", table.get("model", str, ""))
    description = _device_text(table, "description", table.get("description", str, ""))
    label = table.get("label", str, "")
    if label and not ID.match(label):
        raise table.error("label", "must be a template name in the labels folder, e.g. "
                                   "'thermal-50x30'")
    qr = table.get("qr", str, "{uci}")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(qr) if name is not None}
    except ValueError as exc:
        raise table.error("qr", f"is not a format string: {exc}") from exc
    if names - QR_PLACEHOLDERS:
        raise table.error("qr", f"unknown placeholder {{{sorted(names - QR_PLACEHOLDERS)[0]}}};"
                                f" use {', '.join('{' + n + '}' for n in sorted(QR_PLACEHOLDERS))}")
    claim = table.get("claim", str, "user")
    if claim not in CLAIM_MODES:
        raise table.error("claim", f"must be one of {', '.join(CLAIM_MODES)}, got {claim!r}")
    account, wait, secret_days = "", 30.0, 0
    if claim == "pre":
        account = table.get("account", str, "")
        if not 1 <= len(account) <= 64 or not account.isprintable():
            raise table.error("account", "a pre-claimed product names the account its units "
                                         "are claimed for (1-64 printable characters)")
        wait = seconds(table, "preclaim_wait", 30.0)
    else:
        secret_days = table.get("claim_secret_days", int, 0)
        if not 0 <= secret_days <= 3650:
            raise table.error("claim_secret_days", f"must be 0 (no claim secret) to 3650 days, "
                                                   f"got {secret_days}")
    serialized_by = table.get("serialized_by", str, "station")
    if serialized_by not in SERIALIZED_BY:
        raise table.error("serialized_by", f"must be one of {', '.join(SERIALIZED_BY)}, got "
                                           f"{serialized_by!r}")
    agent_identity = table.get("agent_identity", str, "required")
    if agent_identity not in AGENT_IDENTITY:
        raise table.error("agent_identity", f"must be one of {', '.join(AGENT_IDENTITY)}, got "
                                            f"{agent_identity!r}")
    fields_table = table.table("fields")
    fields: dict[str, str | int | float | bool] = {}
    for key, item in fields_table.data.items():
        if not _FIELD_KEY.match(key):
            raise fields_table.error(key, "a field name is letters, digits and '_'")
        if key in RESERVED_FIELDS:
            raise fields_table.error(key, "is set by the station; it cannot be a product field")
        if not isinstance(item, (str, int, float, bool)):
            raise fields_table.error(key, "must be a string, number or true/false")
        if isinstance(item, float) and not math.isfinite(item):
            raise fields_table.error(key, f"must be a finite number, got {item}: device.json5 "
                                          "is JSON, which has no infinity or NaN")
        if isinstance(item, str):
            _device_text(fields_table, key, item)
        fields[key] = item
    scan_check = table.get("scan_check", bool, False)
    if "nvs" in table.data:  # a product made for esptool units: its fields are NVS keys
        for key in fields:
            if problem := key_problem(key):
                raise fields_table.error(key, problem)
    nvs = read_nvs(table.table("nvs"), fields)
    table.finish()
    return Product(
        id=product_id, name=name, model=model, description=description, label=label,
        claim=cast(ClaimMode, claim), fields=MappingProxyType(fields), qr=qr,
        account=account, preclaim_wait=wait, claim_secret_days=secret_days,
        serialized_by=cast(SerializedBy, serialized_by),
        agent_identity=cast(AgentIdentity, agent_identity), scan_check=scan_check,
        nvs=nvs,
    )
