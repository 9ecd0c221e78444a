"""Station config: a TOML file parsed into frozen dataclasses at start-up, with no other I/O.

A bad file fails with the file, the key and the reason, so an engineer can fix it in one go.
Each table has its own module (station.py reads the file and the station-level tables;
products.py, upstream.py and fixtures.py theirs; table.py the helpers they share); this
package re-exports the names the rest of the station uses.
"""

from factory.config.fixtures import DRIVERS, DriverName, Fixture
from factory.config.products import (
    CLAIM_MODES,
    QR_PLACEHOLDERS,
    RESERVED_FIELDS,
    ClaimMode,
    Product,
)
from factory.config.station import (
    Printer,
    StationConfig,
    StatusPage,
    load,
    parse,
    parse_listen,
)
from factory.config.table import ConfigError, Network
from factory.config.upstream import UPSTREAM_KINDS, Upstream, UpstreamKind

__all__ = [
    "CLAIM_MODES",
    "DRIVERS",
    "QR_PLACEHOLDERS",
    "RESERVED_FIELDS",
    "UPSTREAM_KINDS",
    "ClaimMode",
    "ConfigError",
    "DriverName",
    "Fixture",
    "Network",
    "Printer",
    "Product",
    "StationConfig",
    "StatusPage",
    "Upstream",
    "UpstreamKind",
    "load",
    "parse",
    "parse_listen",
]
