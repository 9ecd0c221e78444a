"""The esptool driver's NVS partition on the unit (esp.py): read back and parsed, checked
against what was meant (the chip's MD5, then entry by entry and byte for byte), and rebuilt
with a pre-claimed product's certificate entries (esp_certs.py). Every esptool call goes
through the driver's `call` (its worker thread, its errors as the unit's)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from factory.config.nvs import NvsLayout
from factory.units.errors import VerifyMismatch
from factory.units.esp_certs import cert_entries
from factory.units.esp_link import EspLink
from factory.units.esp_nvs import (
    Entry,
    Extra,
    NvsError,
    Value,
    build_image,
    check_readback,
    differences,
    meant,
    read_image,
    used_pages,
)

_T = TypeVar("_T")


class Calls(Protocol):
    """The driver's way to run an esptool call (EsptoolDriver._call)."""

    async def __call__(self, work: Callable[[], _T]) -> _T: ...


@dataclass(frozen=True)
class Plan:
    """What a partition is meant to hold (the factory data, an upstream's `extra`)."""

    layout: NvsLayout
    items: list[Entry]
    extra: Extra = field(default_factory=dict)
    certified: bool = False  # certificate files follow (a pre-claimed product's)


class Partition:
    """The partition as the unit holds it, through one session (`link`)."""

    def __init__(self, call: Calls, link: EspLink) -> None:
        self._call, self._link = call, link

    async def held(self, plan: Plan, path: str) -> dict[str, dict[str, Value]]:
        """The whole partition read back and parsed."""
        layout = plan.layout
        back = await self._call(lambda: self._link.read(layout.offset, layout.size))
        try:
            return read_image(back)
        except NvsError as exc:
            raise VerifyMismatch(f"the partition read back for {path} is no NVS image: "
                                 f"{exc}") from exc

    async def factory_intact(self, plan: Plan, path: str) -> None:
        """A unit certified before: its factory namespace exactly as planned, and nothing
        beside it but its certificate entries (checked file by file by the certificate
        step, which writes a damaged one again)."""
        held = await self.held(plan, path)
        held.pop(plan.layout.cert_namespace, None)
        wanted = meant(plan.layout, plan.items)
        if held != wanted:
            raise VerifyMismatch(f"the partition read back from {path} holds "
                                 f"{differences(wanted, held)}")

    async def rebuilt(self, plan: Plan, path: str, data: bytes = b"",
                      key: str = "") -> tuple[bytes, Extra]:
        """The image the partition should be: the factory data as planned, the certificate
        entries it holds now (with `key` set to `data`)."""
        namespace = plan.layout.cert_namespace
        held = dict((await self.held(plan, path)).get(namespace, {}))
        if key:
            held[key] = data
        certs = cert_entries(held)
        extra: Extra = {namespace: certs} if certs else {}
        return build_image(plan.layout, plan.items, extra), extra

    async def check(self, path: str, plan: Plan, image: bytes, extra: Extra,
                    theirs: str = "") -> str:
        """The chip's MD5 of the partition (`theirs` when asked already), then its used
        pages read back and parsed: entry by entry (the factory data and `extra`), then byte
        for byte. The MD5 (hex)."""
        offset = plan.layout.offset
        digest = md5_hex(image)
        theirs = theirs or await self._call(lambda: self._link.md5(offset, image))
        if theirs != digest:
            raise VerifyMismatch(f"the chip's MD5 of the partition is {theirs}; the image's "
                                 f"is {digest}")
        # The MD5 covers the whole partition; what is read back and parsed is the pages
        # holding entries (the rest is erased), a sixth of a default partition's bytes.
        used = used_pages(image)
        back = await self._call(lambda: self._link.read(offset, used))
        check_readback(f"the partition read back from {path}", back, image,
                       meant(plan.layout, plan.items, extra))
        return digest


def md5_hex(data: bytes) -> str:
    """The MD5 the chip computes of `data`, as esptool gives it."""
    return hashlib.md5(data).hexdigest()  # noqa: S324 (what the chip computes)
