"""Station config: a TOML file parsed into frozen dataclasses at start-up, with no other I/O.

A bad file fails with the file, the key and the reason, so an engineer can fix it in one go.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, cast

from factory.config.drivers import ConsoleSettings, FramedSettings
from factory.tomltable import TomlTable

ClaimMode = Literal["user", "pre"]
DriverName = Literal["console", "framed"]
DRIVERS: tuple[DriverName, ...] = ("console", "framed")
CLAIM_MODES: tuple[ClaimMode, ...] = ("user", "pre")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# \Z, not $: `$` also matches before a final newline, so "line-1\n" passed as an id.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]+(\[[0-9]+\])?")  # a key, or a dotted path or index
_FIELD_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
# Keys the station itself writes into device.json5; a product may not override them.
RESERVED_FIELDS = frozenset({"id", "product", "name", "model", "description"})


class ConfigError(ValueError):
    """A config file that cannot be used: which file, which key, and why."""

    def __init__(self, source: str | Path, key: str, reason: str) -> None:
        self.source, self.key, self.reason = str(source), key, reason
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")


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


QR_PLACEHOLDERS = frozenset({"uci", "human", "product", "model", "name"})
PrinterKind = Literal["cups"]


@dataclass(frozen=True)
class Printer:
    """Where labels go: a CUPS queue, or none (PDFs are kept in `keep` either way)."""

    queue: str = "none"
    # How labels reach the printer (factory/labels/printers/kinds.py). Only CUPS so far, so
    # the file has no key for it yet; a second kind adds one.
    kind: PrinterKind = "cups"
    server: str = ""  # CUPS server HOST:PORT; empty: the system's default
    copies: int = 1
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    keep: Path = Path("labels")

    @property
    def enabled(self) -> bool:
        return self.queue != "none"


UpstreamKind = Literal["none", "http", "aws-iot"]
UPSTREAM_KINDS: tuple[UpstreamKind, ...] = ("none", "http", "aws-iot")


@dataclass(frozen=True)
class Upstream:
    """The device cloud units are registered with (kind "none": no registration)."""

    kind: UpstreamKind = "none"
    url: str = ""
    token_file: Path | None = None  # holds the product token; never the config itself
    concurrency: int = 4
    timeout: float = 10.0
    # The outbox's retries: full-jitter backoff from retry_base seconds doubling up to
    # retry_cap (a server's Retry-After wins when longer).
    retry_base: float = 1.0
    retry_cap: float = 300.0
    # aws-iot (docs/upstream-aws.md); credentials come from the standard AWS chain only.
    region: str = ""
    endpoint_url: str = ""  # e.g. a local emulator; empty: AWS's own endpoint
    profile: str = ""  # a profile name in ~/.aws (not a credential); empty: the default chain
    policy: str = ""  # the IoT policy attached to every pre-claimed certificate
    thing_group: str = ""  # every thing is added to it (made if missing); empty: none
    thing_types: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ca_file: Path | None = None  # PEM CA chain handed out with certificates (AmazonRootCA1)

    @property
    def enabled(self) -> bool:
        return self.kind != "none"


@dataclass(frozen=True)
class StatusPage:
    """The operators' status page at `/`: shift start times (local, "HH:MM"), the networks
    that see it without a token, and when an upstream backlog needs a person."""

    shifts: tuple[str, ...] = ("06:00", "14:00", "22:00")
    open_networks: tuple[Network, ...] = ()
    backlog_alert_minutes: int = 30


@dataclass(frozen=True)
class Fixture:
    """One serial port on the line where units are plugged in."""

    name: str
    port: str  # device path (/dev/ttyUSB0, /dev/serial/by-id/…) or socket://HOST:PORT
    driver: DriverName
    product: str
    baud: int = 115200
    device_path: str = "config/device.json5"  # where device.json5 goes on the unit
    poll_interval: float = 0.5  # seconds between looks for a unit arriving or leaving
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    framed: FramedSettings = field(default_factory=FramedSettings)


@dataclass(frozen=True)
class StationConfig:
    source: Path
    station_id: str
    host: str
    port: int
    journal: Path
    max_body_bytes: int
    ioto_networks: tuple[Network, ...]
    products: tuple[Product, ...]
    fixtures: tuple[Fixture, ...] = ()
    labels_dir: Path = Path("labels")  # label templates
    printer: Printer = field(default_factory=Printer)
    upstream: Upstream = field(default_factory=Upstream)
    status: StatusPage = field(default_factory=StatusPage)
    # Seconds a client gets to send a request's head (from connecting, or after the last
    # answer on a kept-alive connection) and, separately, its body; then it is cut off.
    client_timeout: float = 15.0

    def product(self, product_id: str) -> Product | None:
        """The configured product with this id, or None."""
        for product in self.products:
            if product.id == product_id:
                return product
        return None


class _Table(TomlTable):
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

    def table(self, name: str, *, required: bool = False) -> _Table:
        value = self.get(name, dict, ... if required else {}, what="a table")
        return _Table(self.source, self.key(name), value)


def load(path: str | Path) -> StationConfig:
    """Read and validate a station config file."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise ConfigError(source, "", f"cannot be read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", "is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"is not valid TOML: {exc}") from exc
    return parse(data, source)


def parse(data: Mapping[str, Any], source: Path) -> StationConfig:
    """Turn parsed TOML into a StationConfig; relative paths are taken from the file's folder."""
    root = _Table(source, "", data)
    station = root.table("station", required=True)
    station_id = station.get("id", str)
    if not _ID.match(station_id):
        raise station.error("id", "must be 1-64 letters, digits, '.', '_' or '-'")
    host, port = _listen(station, station.get("listen", str, "127.0.0.1:8080"))
    journal_text = station.get("journal", str)
    if not journal_text:
        raise station.error("journal", "must name a file")
    journal = _path(source, journal_text)
    labels_dir = _path(source, station.get("labels", str, "../labels"))
    max_body = station.get("max_body_bytes", int, 1024 * 1024)
    if not 1024 <= max_body <= 64 * 1024 * 1024:
        raise station.error("max_body_bytes", "must be between 1024 and 67108864")
    client_timeout = _seconds(station, "client_timeout", 15.0)
    station.finish()

    ioto = root.table("ioto")
    networks = tuple(_network(ioto, i, n) for i, n in enumerate(ioto.get("networks", list, [])))
    ioto.finish()

    products_raw = root.get("products", list, [], what="an array of tables ([[products]])")
    products = tuple(_product(source, i, p) for i, p in enumerate(products_raw))
    seen: set[str] = set()  # product ids
    for i, product in enumerate(products):
        if product.id in seen:
            raise ConfigError(source, f"products[{i}].id", f"{product.id!r} is defined twice")
        seen.add(product.id)
    printer = _printer(root.table("printer"), journal.parent)
    upstream = _upstream(root.table("upstream"), products)
    status = _status_page(root.table("status"))
    fixtures_raw = root.get("fixtures", list, [], what="an array of tables ([[fixtures]])")
    fixtures = tuple(_fixture(source, i, f, seen) for i, f in enumerate(fixtures_raw))
    for key in ("name", "port"):
        values = [getattr(f, key) for f in fixtures]
        for i, value in enumerate(values):
            if value in values[:i]:
                raise ConfigError(source, f"fixtures[{i}].{key}", f"{value!r} is used twice")
    for i, fixture in enumerate(fixtures):
        product = next(p for p in products if p.id == fixture.product)
        if product.claim == "pre" and not upstream.enabled:
            raise ConfigError(source, f"fixtures[{i}].product",
                              f"product {product.id!r} is pre-claimed (claim = \"pre\"), "
                              "which needs an [upstream]; configure one or use claim = "
                              "\"user\"")
    root.finish()
    return StationConfig(
        source=source, station_id=station_id, host=host, port=port, journal=journal,
        max_body_bytes=max_body, ioto_networks=networks, products=products, fixtures=fixtures,
        labels_dir=labels_dir, printer=printer, upstream=upstream, status=status,
        client_timeout=client_timeout,
    )


_CREDENTIAL_KEY = re.compile(r"access_key|secret|session_token|password|credential", re.I)
_AWS_KEYS = ("region", "endpoint_url", "profile", "policy", "thing_group", "thing_types",
             "ca_file")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}\Z")
_AWS_NAME = re.compile(r"^[A-Za-z0-9:_-]{1,128}\Z")  # thing types and thing groups
_AWS_POLICY = re.compile(r"^[\w+=,.@-]{1,128}\Z", re.ASCII)


def _upstream(table: _Table, products: tuple[Product, ...]) -> Upstream:
    for key in table.data:
        if _CREDENTIAL_KEY.search(key):
            raise table.error(key, "credentials never go in the station config (it is copied, "
                                   "printed and committed); give the station AWS credentials "
                                   "through the standard chain: AWS_ACCESS_KEY_ID and "
                                   "AWS_SECRET_ACCESS_KEY in its environment, a profile in "
                                   "~/.aws (upstream.profile or AWS_PROFILE), or the "
                                   "instance role")
    kind = table.get("kind", str, "none")
    if kind not in UPSTREAM_KINDS:
        raise table.error("kind", f"must be none, http or aws-iot, got {kind!r}")
    if kind == "none":
        table.finish()
        return Upstream()
    if kind == "aws-iot":
        return _aws_upstream(table, products)
    for key in _AWS_KEYS:
        if key in table.data:
            raise table.error(key, 'is for kind = "aws-iot" only')
    url = table.get("url", str)
    if not re.match(r"^https?://[^\s/]+(/\S*)?\Z", url):
        raise table.error("url", f"must be an http(s) URL, got {url!r}")
    token_file = _path(table.source, table.get("token_file", str))
    sending = _sending(table)
    table.finish()
    return Upstream(kind="http", url=url, token_file=token_file, **sending)


def _sending(table: _Table) -> dict[str, Any]:
    """Any upstream's requests in flight at once, seconds before one is given up, and the
    retry schedule's first and longest wait (Upstream's fields of those names)."""
    concurrency = table.get("concurrency", int, 4)
    if not 1 <= concurrency <= 64:
        raise table.error("concurrency", f"must be 1 to 64, got {concurrency}")
    base = _seconds(table, "retry_base", Upstream.retry_base)
    cap = _seconds(table, "retry_cap", Upstream.retry_cap)
    if cap < base:
        raise table.error("retry_cap", f"must be at least retry_base ({base:g} s), got {cap:g}")
    return {"concurrency": concurrency, "timeout": _seconds(table, "timeout", 10.0),
            "retry_base": base, "retry_cap": cap}


def _status_page(table: _Table) -> StatusPage:
    shifts_raw = table.get("shifts", list, list(StatusPage.shifts))
    if not 1 <= len(shifts_raw) <= 24:
        raise table.error("shifts", "must list 1 to 24 shift start times, e.g. [\"06:00\", "
                                    "\"14:00\", \"22:00\"]")
    shifts: list[str] = []
    for i, value in enumerate(shifts_raw):
        if not isinstance(value, str) or not re.match(r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z", value):
            raise table.error(f"shifts[{i}]", f"must be a local time \"HH:MM\" (00:00 to 23:59)"
                                              f", got {value!r}")
        if shifts and value <= shifts[-1]:
            raise table.error(f"shifts[{i}]", f"{value} must come after {shifts[-1]}: list "
                                              "the shifts in the order they start in a day")
        shifts.append(value)
    networks = tuple(_network(table, i, n, "open_networks")
                     for i, n in enumerate(table.get("open_networks", list, [])))
    backlog = table.get("backlog_alert_minutes", int, StatusPage.backlog_alert_minutes)
    if not 1 <= backlog <= 7 * 24 * 60:
        raise table.error("backlog_alert_minutes", f"must be 1 to 10080, got {backlog}")
    table.finish()
    return StatusPage(shifts=tuple(shifts), open_networks=networks,
                      backlog_alert_minutes=backlog)


def _aws_upstream(table: _Table, products: tuple[Product, ...]) -> Upstream:
    for key in ("url", "token_file"):
        if key in table.data:
            raise table.error(key, 'is for kind = "http" only; AWS IoT is reached by region '
                                   '(and endpoint_url), with credentials from the AWS chain')
    region = table.get("region", str)
    if not _AWS_REGION.match(region):
        raise table.error("region", f"must be an AWS region such as eu-west-1, got {region!r}")
    endpoint_url = table.get("endpoint_url", str, "")
    if endpoint_url and not re.match(r"^https?://[^\s/]+/?\Z", endpoint_url):
        raise table.error("endpoint_url", f"must be http(s)://host[:port], got {endpoint_url!r}")
    profile = table.get("profile", str, "")
    policy = table.get("policy", str, "")
    if policy and not _AWS_POLICY.match(policy):
        raise table.error("policy", "must be an AWS IoT policy name (letters, digits, "
                                    f"'_+=,.@-', at most 128), got {policy!r}")
    preclaimed = [p.id for p in products if p.claim == "pre"]
    if preclaimed and not policy:
        raise table.error("policy", f"is required: product {preclaimed[0]} is pre-claimed, "
                                    "and its certificates need an AWS IoT policy")
    thing_group = table.get("thing_group", str, "")
    if thing_group and not _AWS_NAME.match(thing_group):
        raise table.error("thing_group", "must be letters, digits, ':', '_' or '-' (at most "
                                         f"128), got {thing_group!r}")
    types = table.table("thing_types")
    thing_types = {p.id: types.get(p.id, str, p.id) for p in products}
    for product, name in thing_types.items():
        if not _AWS_NAME.match(name):
            reason = (f"{name!r} is not a valid thing type name (letters, digits, ':', '_', "
                      f"'-'); set upstream.thing_types.\"{product}\" to one")
            raise types.error(product, reason) if product in types.data else \
                table.error("thing_types", reason)
    types.finish()
    ca_text = table.get("ca_file", str, "")
    sending = _sending(table)
    table.finish()
    return Upstream(kind="aws-iot", **sending, region=region,
                    endpoint_url=endpoint_url, profile=profile, policy=policy,
                    thing_group=thing_group, thing_types=MappingProxyType(thing_types),
                    ca_file=_path(table.source, ca_text) if ca_text else None)


def _path(source: Path, text: str) -> Path:
    """A path from the config: relative ones are taken from the config file's folder."""
    path = Path(text)
    return path if path.is_absolute() else Path(os.path.abspath(source.parent / path))


def _printer(table: _Table, state_dir: Path) -> Printer:
    queue = table.get("queue", str, "none")
    if not re.match(r"^[A-Za-z0-9_.-]{1,127}\Z", queue):
        raise table.error("queue", "must be a CUPS queue name (letters, digits, '_', '.', '-')"
                                   " or \"none\"")
    server = table.get("server", str, "")
    if server and not re.match(r"^[A-Za-z0-9_.\[\]:-]+\Z", server):
        raise table.error("server", f"must be HOST or HOST:PORT, got {server!r}")
    copies = table.get("copies", int, 1)
    if not 1 <= copies <= 10:
        raise table.error("copies", f"must be 1 to 10, got {copies}")
    options_table = table.table("options")
    options: dict[str, str] = {}
    for key, value in options_table.data.items():
        if not re.match(r"^[A-Za-z0-9_-]{1,64}\Z", key) or not isinstance(value, str):
            raise options_table.error(key, "an option is name = \"value\" (lp -o name=value)")
        options[key] = value
    keep = table.get("keep", str, "")
    table.finish()
    return Printer(queue=queue, server=server, copies=copies,
                   options=MappingProxyType(options),
                   keep=_path(table.source, keep) if keep else state_dir / "labels")


def _fixture(source: Path, index: int, value: Any, products: set[str]) -> Fixture:
    if not isinstance(value, dict):
        raise ConfigError(source, f"fixtures[{index}]", "must be a table ([[fixtures]])")
    table = _Table(source, f"fixtures[{index}]", value)
    name = table.get("name", str)
    if not _ID.match(name):
        raise table.error("name", "must be 1-64 letters, digits, '.', '_' or '-'")
    port = table.get("port", str)
    if "://" in port:
        if not re.match(r"^socket://[^/:]+:[0-9]+\Z", port):
            raise table.error("port", "must be a device path (/dev/ttyUSB0, "
                                      f"/dev/serial/by-id/...) or socket://HOST:PORT, got {port!r}")
    elif not port or not port.isprintable():  # "/dev/ttyUSB0\n" or a NUL: never a port
        raise table.error("port", "must name the fixture's serial port (a path without "
                                  f"control characters), got {port!r}")
    elif not port.startswith("/"):
        port = str(_path(source, port))  # e.g. a simulated unit's link
    driver = table.get("driver", str)
    if driver not in DRIVERS:
        raise table.error("driver", f"must be one of {', '.join(DRIVERS)}, got {driver!r}")
    product = table.get("product", str)
    if product not in products:
        raise table.error("product", f"{product!r} is not one of the [[products]] ids")
    baud = table.get("baud", int, 115200)
    if not 50 <= baud <= 4_000_000:
        raise table.error("baud", f"must be between 50 and 4000000, got {baud}")
    device_path = table.get("device_path", str, "config/device.json5")
    if not device_path or any(ord(c) < 32 or ord(c) == 127 for c in device_path):
        raise table.error("device_path", "must be a file path on the unit (no control "
                                         "characters)")
    poll = _seconds(table, "poll_interval", 0.5)
    console = _settings(table.table("console"), ConsoleSettings())
    try:
        re.compile(console.prompt)
    except re.error as exc:
        raise table.error("console.prompt", f"is not a regular expression: {exc}") from exc
    framed = _settings(table.table("framed"), FramedSettings())
    table.finish()
    return Fixture(name=name, port=port, driver=cast(DriverName, driver), product=product,
                   baud=baud, device_path=device_path, poll_interval=poll, console=console,
                   framed=framed)


def _seconds(table: _Table, name: str, default: float) -> float:
    value = float(table.get(name, (int, float), default))
    if not 0 < value <= 3600:
        raise table.error(name, f"must be a number of seconds above 0, got {value:g}")
    return value


_S = TypeVar("_S", ConsoleSettings, FramedSettings)


def _settings(table: _Table, defaults: _S) -> _S:
    """A driver's settings table: each key typed like its default."""
    changes: dict[str, Any] = {}
    for f in fields(defaults):
        default = getattr(defaults, f.name)
        if isinstance(default, float):
            changes[f.name] = _seconds(table, f.name, default)
        elif isinstance(default, int):
            changes[f.name] = table.get(f.name, int, default)
            if changes[f.name] < 1:
                raise table.error(f.name, "must be at least 1")
        else:
            changes[f.name] = table.get(f.name, str, default)
    table.finish()
    return replace(defaults, **changes)


def _listen(table: _Table, text: str) -> tuple[str, int]:
    return parse_listen(table.source, text, table.key("listen"))


def parse_listen(source: str | Path, text: str, key: str = "listen") -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) into its parts."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    # ASCII digits: str.isdigit() also takes '²', which int() refuses.
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port_text) \
            or not 0 <= int(port_text) <= 65535:
        raise ConfigError(source, key, f"must be HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    return host, int(port_text)


def _network(table: _Table, index: int, value: Any, key: str = "networks") -> Network:
    if not isinstance(value, str):
        raise table.error(f"{key}[{index}]", "must be a CIDR string such as '10.0.0.0/8'")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise table.error(f"{key}[{index}]", f"{value!r} is not a CIDR network: {exc}") from exc


def _product(source: Path, index: int, value: Any) -> Product:
    if not isinstance(value, dict):
        raise ConfigError(source, f"products[{index}]", "must be a table ([[products]])")
    table = _Table(source, f"products[{index}]", value)
    product_id = table.get("id", str)
    if not _ID.match(product_id):
        raise table.error("id", "must be 1-64 letters, digits, '.', '_' or '-'")
    name = table.get("name", str)
    model = table.get("model", str, "")
    description = table.get("description", str, "")
    label = table.get("label", str, "")
    if label and not _ID.match(label):
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
        wait = _seconds(table, "preclaim_wait", 30.0)
    else:
        secret_days = table.get("claim_secret_days", int, 0)
        if not 0 <= secret_days <= 3650:
            raise table.error("claim_secret_days", f"must be 0 (no claim secret) to 3650 days, "
                                                   f"got {secret_days}")
    fields_table = table.table("fields")
    fields: dict[str, str | int | float | bool] = {}
    for key, item in fields_table.data.items():
        if not _FIELD_KEY.match(key):
            raise fields_table.error(key, "a field name is letters, digits and '_'")
        if key in RESERVED_FIELDS:
            raise fields_table.error(key, "is set by the station; it cannot be a product field")
        if not isinstance(item, (str, int, float, bool)):
            raise fields_table.error(key, "must be a string, number or true/false")
        fields[key] = item
    table.finish()
    return Product(
        id=product_id, name=name, model=model, description=description, label=label,
        claim=cast(ClaimMode, claim), fields=MappingProxyType(fields), qr=qr,
        account=account, preclaim_wait=wait, claim_secret_days=secret_days,
    )
