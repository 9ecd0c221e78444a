"""The whole station config file: `load` and `parse` read it table by table into a
StationConfig; the small station-level tables ([station], [ioto], [printer], [status]) are
read here, the others by their own modules."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

from factory.config.fixtures import Fixture, read_fixtures
from factory.config.nvs import key_problem
from factory.config.products import Product, read_products
from factory.config.table import ID, ConfigError, Network, Table, config_path, network, seconds
from factory.config.upstream import Upstream, read_upstream

PrinterKind = Literal["cups", "socket"]
PrinterLanguage = Literal["pdf", "zpl"]
PRINTER_LANGUAGES: tuple[PrinterLanguage, ...] = ("pdf", "zpl")
PRINTER_DPIS = (152, 203, 300, 600)  # the print heads Zebra makes


@dataclass(frozen=True)
class Printer:
    """Where labels go: a CUPS queue, a printer's raw port (`socket`), or none (the label files
    are kept in `keep` either way)."""

    queue: str = "none"
    # How labels reach the printer (factory/labels/printers/kinds.py): set by `socket`.
    kind: PrinterKind = "cups"
    server: str = ""  # CUPS server HOST:PORT; empty: the system's default
    copies: int = 1
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    keep: Path = Path("labels")
    language: PrinterLanguage = "pdf"  # zpl: native ZPL II, kept beside the PDF
    dpi: int = 203  # the printer's; ZPL positions and sizes are in its dots
    socket: tuple[str, int] | None = None  # HOST, PORT of a printer's raw port (9100)

    @property
    def enabled(self) -> bool:
        return self.queue != "none" or self.socket is not None

    @property
    def name(self) -> str:
        """The printer as the journal and the status page name it."""
        if self.socket is not None:
            host, port = self.socket
            return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        return self.queue


@dataclass(frozen=True)
class StatusPage:
    """The operators' status page at `/`: shift start times (local, "HH:MM"), the networks
    that see it without a token, and when an upstream backlog needs a person."""

    shifts: tuple[str, ...] = ("06:00", "14:00", "22:00")
    open_networks: tuple[Network, ...] = ()
    backlog_alert_minutes: int = 30


@dataclass(frozen=True)
class StationConfig:
    source: Path
    station_id: str
    host: str
    port: int
    # The SQLite journal's file; for a PostgreSQL journal (`journal_url`), only the name
    # beside which the station keeps its local files (claim key, labels, the anchor).
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
    journal_url: str = ""  # [station] journal as a postgresql:// URL (a shared journal)
    fleet_url: str = ""  # [fleet] url: the center this station ships its journal to

    @property
    def journal_location(self) -> str | Path:
        """What `open_journal` opens: the PostgreSQL URL, or the SQLite file."""
        return self.journal_url or self.journal

    def product(self, product_id: str) -> Product | None:
        """The configured product with this id, or None."""
        for product in self.products:
            if product.id == product_id:
                return product
        return None


JOURNAL_URL_SCHEMES = ("postgresql://", "postgres://")


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
    root = Table(source, "", data)
    station = root.table("station", required=True)
    station_id = station.get("id", str)
    if not ID.match(station_id):
        raise station.error("id", "must be 1-64 letters, digits, '.', '_' or '-'")
    host, port = parse_listen(source, station.get("listen", str, "127.0.0.1:8080"),
                              station.key("listen"))
    journal_text = station.get("journal", str)
    if not journal_text:
        raise station.error("journal", "must name a file")
    journal_url = journal_text if journal_text.startswith(JOURNAL_URL_SCHEMES) else ""
    journal = config_path(source, "journal.postgresql" if journal_url else journal_text)
    labels_dir = config_path(source, station.get("labels", str, "../labels"))
    max_body = station.get("max_body_bytes", int, 1024 * 1024)
    if not 1024 <= max_body <= 64 * 1024 * 1024:
        raise station.error("max_body_bytes", "must be between 1024 and 67108864")
    client_timeout = seconds(station, "client_timeout", 15.0)
    station.finish()

    ioto = root.table("ioto")
    networks = tuple(network(ioto, i, n) for i, n in enumerate(ioto.get("networks", list, [])))
    ioto.finish()

    products = read_products(root)
    printer = _printer(root.table("printer"), journal.parent)
    upstream = read_upstream(root.table("upstream"), products)
    status = _status_page(root.table("status"))
    fleet = root.table("fleet")
    fleet_url = fleet.get("url", str, "")
    if fleet_url and not fleet_url.startswith(JOURNAL_URL_SCHEMES):
        raise fleet.error("url", "must be a postgresql:// URL (the fleet center)")
    fleet.finish()
    fixtures = read_fixtures(root, {p.id for p in products})
    for i, fixture in enumerate(fixtures):
        index, product = next((n, p) for n, p in enumerate(products) if p.id == fixture.product)
        for key in product.fields if fixture.driver == "esptool" else ():
            if problem := key_problem(key):
                raise ConfigError(source, f"products[{index}].fields.{key}",
                                  f"{problem} (fixture {fixture.name!r} flashes this product)")
        if product.claim == "pre" and not upstream.enabled:
            raise ConfigError(source, f"fixtures[{i}].product",
                              f"product {product.id!r} is pre-claimed (claim = \"pre\"), "
                              "which needs an [upstream]; configure one or use claim = "
                              "\"user\"")
        if fixture.driver == "esptool" and product.serialized_by == "agent":
            raise ConfigError(source, f"fixtures[{i}].driver",
                              f"product {product.id!r} is serialized by its agent "
                              "(serialized_by = \"agent\"), whose device file an esptool "
                              "unit cannot hold: its data is an NVS partition the station "
                              "writes; make the product serialized_by = \"station\"")
        if upstream.kind == "rainmaker" and fixture.driver != "esptool":
            raise ConfigError(source, f"fixtures[{i}].driver",
                              f"product {product.id!r} is claimed from RainMaker, whose "
                              "credentials go into the unit's NVS partition: its fixtures "
                              "need driver = \"esptool\"")
    root.finish()
    return StationConfig(
        source=source, station_id=station_id, host=host, port=port, journal=journal,
        max_body_bytes=max_body, ioto_networks=networks, products=products,
        fixtures=fixtures, labels_dir=labels_dir, printer=printer, upstream=upstream,
        status=status, client_timeout=client_timeout, journal_url=journal_url,
        fleet_url=fleet_url,
    )


def parse_listen(source: str | Path, text: str, key: str = "listen") -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) into its parts."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    # ASCII digits: str.isdigit() also takes '²', which int() refuses.
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port_text) \
            or not 0 <= int(port_text) <= 65535:
        raise ConfigError(source, key, f"must be HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    return host, int(port_text)


def _printer(table: Table, state_dir: Path) -> Printer:
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
    language = table.get("language", str, "pdf")
    if language not in PRINTER_LANGUAGES:
        raise table.error("language", f"must be one of {', '.join(PRINTER_LANGUAGES)}, got "
                                      f"{language!r}")
    dpi = table.get("dpi", int, 203)
    if dpi not in PRINTER_DPIS:
        raise table.error("dpi", f"must be a Zebra print head's: "
                                 f"{', '.join(map(str, PRINTER_DPIS))}; got {dpi}")
    socket_text = table.get("socket", str, "")
    socket = None
    if socket_text:
        socket = parse_listen(table.source, socket_text, table.key("socket"))
        if not socket[1] or not re.match(r"^[A-Za-z0-9_.:-]+\Z", socket[0]):
            raise table.error("socket", f"must be the printer's HOST:PORT (e.g. "
                                        f"192.168.1.50:9100), got {socket_text!r}")
        if queue != "none":
            raise table.error("socket", "a printer is either a CUPS queue (queue) or a raw "
                                        "port (socket): remove one")
        if language != "zpl":
            raise table.error("socket", "a raw port is sent ZPL: set language = \"zpl\"")
    table.finish()
    return Printer(queue=queue, server=server, copies=copies,
                   options=MappingProxyType(options),
                   keep=config_path(table.source, keep) if keep else state_dir / "labels",
                   language=cast(PrinterLanguage, language), dpi=dpi, socket=socket,
                   kind="socket" if socket else "cups")


def _status_page(table: Table) -> StatusPage:
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
    networks = tuple(network(table, i, n, "open_networks")
                     for i, n in enumerate(table.get("open_networks", list, [])))
    backlog = table.get("backlog_alert_minutes", int, StatusPage.backlog_alert_minutes)
    if not 1 <= backlog <= 7 * 24 * 60:
        raise table.error("backlog_alert_minutes", f"must be 1 to 10080, got {backlog}")
    table.finish()
    return StatusPage(shifts=tuple(shifts), open_networks=networks,
                      backlog_alert_minutes=backlog)
