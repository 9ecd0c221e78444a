"""What every unit driver offers the pipeline. Drivers know bytes and their protocol; the
pipeline (pipeline.py) knows units and steps, and never looks inside a driver."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from factory.config import Product
from factory.units.errors import UnitError

if TYPE_CHECKING:
    from factory.units.esp_nvs import Entry, Value


@dataclass(frozen=True)
class Identity:
    """What a unit says about itself."""

    hardware_id: str  # as the unit reports it; the station normalises it
    model: str = ""
    firmware: str = ""


@dataclass(frozen=True)
class Verification:
    """How a written file was checked on the unit."""

    algorithm: str  # "sha256", "md5", "cksum", "readback"
    digest: str  # hex (or the CRC's decimal for cksum), as computed on the unit
    size: int


class UnitDriver(Protocol):
    """One unit on one open port. Every method raises a UnitError on failure."""

    async def wake(self) -> None:
        """Get the unit's attention (console prompt, HELLO) after it was plugged in."""

    async def identify(self) -> Identity:
        """The unit's hardware identity (MAC, chip serial), model and firmware."""

    async def write_file(self, path: str, data: bytes) -> None:
        """Store `data` at `path` on the unit, atomically, with mode 0600."""

    async def read_file(self, path: str) -> bytes:
        """The file at `path` as the unit holds it (a device file its own agent wrote)."""

    async def verify_file(self, path: str, data: bytes) -> Verification:
        """Check the unit holds exactly `data` at `path`; VerifyMismatch if not."""

    async def make_key(self, path: str, common_name: str) -> str | None:
        """Have the unit keep a private key at `path` (made on the unit, mode 0600, if there
        is none yet) and return the PEM CSR for it with subject CN `common_name`. None when
        the unit cannot make keys; the station then makes one and writes it."""

    async def present(self) -> bool:
        """Whether a unit answers on the port now (used to wait for one to arrive and to
        leave). False for silence; UnitGone when the port itself went away (unplugged), so
        the fixture reopens it."""


@runtime_checkable
class RendersPayload(Protocol):
    """A driver whose unit stores something other than device.json5 (an ESP32's NVS
    partition): it says where the unit's data goes and makes the bytes itself."""

    def render(self, product: Product, uci: str,
               extra: Mapping[str, Sequence[Entry]] = ...) -> tuple[str, bytes]:
        """Where the data goes and its bytes; `extra` namespaces (an upstream's credentials,
        e.g. RainMaker's rmaker_creds) go into the same partition after the product's."""
        ...


@runtime_checkable
class HoldsNvs(Protocol):
    """A driver that can read back the unit's NVS partition (a re-plugged unit's
    credentials, checked against the journal)."""

    async def read_nvs(self, product: Product) -> dict[str, dict[str, Value]]: ...


@runtime_checkable
class ExplainsSilence(Protocol):
    """A driver that can tell a port where nothing is from one where a unit is but does not
    answer as it must (an ESP32 not in its bootloader): `silence` says why, after a
    `present()` that was False; None when nothing is known."""

    silence: UnitError | None
