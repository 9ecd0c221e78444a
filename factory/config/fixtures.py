"""The [[fixtures]]: the serial ports on the line where units are plugged in, and each driver's
settings table in them ([fixtures.console], [fixtures.framed]).

A new driver adds its name to `DriverName`, its settings class to factory/config/drivers.py and
a field of that name to `Fixture`, and registers its settings reader in `SETTINGS`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

from factory.config.drivers import (
    AFTER,
    BEFORE,
    ConsoleSettings,
    EsptoolSettings,
    FramedSettings,
)
from factory.config.scanner import Scanning, read_scanning
from factory.config.table import ID, ConfigError, Table, config_path, seconds

DriverName = Literal["console", "framed", "esptool"]
DRIVERS: tuple[DriverName, ...] = get_args(DriverName)


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
    scanning: Scanning = field(default_factory=Scanning)  # bind, scan_check, [.scanner]
    esptool: EsptoolSettings = field(default_factory=EsptoolSettings)


def read_fixtures(root: Table, products: set[str]) -> tuple[Fixture, ...]:
    """The file's [[fixtures]], each for one of `products` (ids); names and ports used once."""
    source = root.source
    fixtures_raw = root.get("fixtures", list, [], what="an array of tables ([[fixtures]])")
    found = tuple(_fixture(source, i, f, products) for i, f in enumerate(fixtures_raw))
    for key in ("name", "port"):
        values = [getattr(f, key) for f in found]
        for i, value in enumerate(values):
            if value in values[:i]:
                raise ConfigError(source, f"fixtures[{i}].{key}", f"{value!r} is used twice")
    # A scanner on a unit's port would read the unit's console as scans (and steal its bytes).
    ports = {os.path.normpath(f.port): f.name for f in found}
    for i, fixture in enumerate(found):
        scanner = fixture.scanning.scanner.port
        owner = ports.get(os.path.normpath(scanner)) if scanner else None
        if owner is not None:
            whose = "this fixture's own" if owner == fixture.name else f"fixture {owner!r}'s"
            raise ConfigError(source, f"fixtures[{i}].scanner.port", (
                f"{scanner!r} is {whose} unit port: the scanner needs a port of its own "
                "(its /dev/ttyACM* or /dev/serial/by-id/... path)"))
    return found


def _fixture(source: Path, index: int, value: Any, products: set[str]) -> Fixture:
    if not isinstance(value, dict):
        raise ConfigError(source, f"fixtures[{index}]", "must be a table ([[fixtures]])")
    table = Table(source, f"fixtures[{index}]", value)
    name = table.get("name", str)
    if not ID.match(name):
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
        port = str(config_path(source, port))  # e.g. a simulated unit's link
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
    poll = seconds(table, "poll_interval", 0.5)
    # Every driver's table is read, whichever driver the fixture uses: a typo in one is
    # still a typo.
    settings = {driver_name: read(table.table(driver_name))
                for driver_name, read in SETTINGS.items()}
    scanning = read_scanning(table)
    table.finish()
    return Fixture(name=name, port=port, driver=cast(DriverName, driver), product=product,
                   baud=baud, device_path=device_path, poll_interval=poll,
                   scanning=scanning, **settings)


_S = TypeVar("_S", ConsoleSettings, FramedSettings, EsptoolSettings)


def _settings(table: Table, defaults: _S) -> _S:
    """A driver's settings table: each key typed like its default."""
    changes: dict[str, Any] = {}
    for f in fields(defaults):
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            changes[f.name] = table.get(f.name, bool, default)
        elif isinstance(default, float):
            changes[f.name] = seconds(table, f.name, default)
        elif isinstance(default, int):
            changes[f.name] = table.get(f.name, int, default)
            if changes[f.name] < 1:
                raise table.error(f.name, "must be at least 1")
        else:
            changes[f.name] = table.get(f.name, str, default)
    table.finish()
    return replace(defaults, **changes)


def _console(table: Table) -> ConsoleSettings:
    console = _settings(table, ConsoleSettings())
    try:
        re.compile(console.prompt)
    except re.error as exc:
        raise table.error("prompt", f"is not a regular expression: {exc}") from exc
    return console


def _framed(table: Table) -> FramedSettings:
    return _settings(table, FramedSettings())


def _esptool(table: Table) -> EsptoolSettings:
    settings = _settings(table, EsptoolSettings())
    for key, allowed in (("before", BEFORE), ("after", AFTER)):
        if getattr(settings, key) not in allowed:
            raise table.error(key, f"must be one of {', '.join(allowed)}, got "
                                   f"{getattr(settings, key)!r}")
    if not 9600 <= settings.flash_baud <= 4_000_000:
        raise table.error("flash_baud", "must be between 9600 and 4000000 (921600 and "
                                        f"460800 are usual), got {settings.flash_baud}")
    return settings


# Each driver's settings reader, by the name of its table and of its field in Fixture: the one
# place a driver registers (tests/test_config.py checks that every DriverName has one).
SETTINGS: dict[DriverName, Callable[[Table], Any]] = {"console": _console, "framed": _framed,
                                                      "esptool": _esptool}
