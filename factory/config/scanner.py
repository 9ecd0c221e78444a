"""A fixture's label scanning: `bind` (how a unit gets its UCI), `scan_check` (the label on the
unit scanned at the end of the line) and [fixtures.scanner] (a barcode scanner in serial mode,
USB-CDC or RS-232, whose codes end with a suffix)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from factory.config.table import Table

BindMode = Literal["issue", "scan"]  # issue: a new UCI per unit; scan: a pre-printed label's
BIND_MODES: tuple[BindMode, ...] = get_args(BindMode)
# What a scanner sends after each code (its "suffix" setting), by its name in the config.
SUFFIXES: dict[str, bytes] = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "Tab": b"\t"}


@dataclass(frozen=True)
class ScannerSettings:
    """A serial barcode scanner; `port` "" means none (scans come over HTTP or the page)."""

    port: str = ""
    baud: int = 9600
    suffix: str = "CR"  # a key of SUFFIXES

    @property
    def enabled(self) -> bool:
        return bool(self.port)

    @property
    def terminator(self) -> bytes:
        return SUFFIXES[self.suffix]


@dataclass(frozen=True)
class Scanning:
    bind: BindMode = "issue"
    scan_check: bool = False
    scanner: ScannerSettings = ScannerSettings()

    @property
    def scans(self) -> bool:
        """Whether the fixture ever waits for a scan."""
        return self.bind == "scan" or self.scan_check


def read_scanning(table: Table) -> Scanning:
    """The fixture's scanning keys and its [fixtures.scanner] table."""
    bind = table.get("bind", str, "issue")
    if bind not in BIND_MODES:
        raise table.error("bind", f"must be one of {', '.join(BIND_MODES)}, got {bind!r}")
    scan_check = table.get("scan_check", bool, False)
    sub = table.table("scanner")
    port = sub.get("port", str, "")
    if port and (not port.isprintable() or not port.startswith("/")):
        raise sub.error("port", f"must be the scanner's device path (/dev/ttyACM0, "
                                f"/dev/serial/by-id/...), got {port!r}")
    baud = sub.get("baud", int, 9600)
    if not 50 <= baud <= 4_000_000:
        raise sub.error("baud", f"must be between 50 and 4000000, got {baud}")
    suffix = sub.get("suffix", str, "CR")
    if suffix not in SUFFIXES:
        raise sub.error("suffix", f"must be one of {', '.join(SUFFIXES)} (the scanner's "
                                  f"suffix setting), got {suffix!r}")
    sub.finish()
    scanning = Scanning(bind, scan_check, ScannerSettings(port, baud, suffix))
    if port and not scanning.scans:
        raise sub.error("port", "a scanner is set but the fixture never waits for a scan: "
                                "set bind = \"scan\" or scan_check = true")
    return scanning
