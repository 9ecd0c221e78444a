"""The `esptool` driver: ESP32-family units through their ROM bootloader, with esptool's
Python API (≥ 5). No factory firmware is needed on the unit.

esptool is synchronous and opens the serial device itself, so this driver does not use the
fixture's asyncio Port: it is given the device path and runs every esptool call in a worker
thread, one at a time, from esptool's own pool (`THREADS`): asyncio's default executor has
only CPU count + 4 threads, and each call holds one for up to a second (the flasher stub at
115200 baud), so with 8 fixtures on 2 CPUs two of them waited for a thread. esptool opens
the device exclusively (a lock other serial programs respect) for as long as a session
lasts: from `present()` (sync, chip detection) through flashing and verifying; the session
is closed after the unit was reset (or failed), so between units nothing holds the port. A
cancelled step cannot stop a call already in its thread: esptool's own timeouts (a few
seconds) bound it.

The unit's data is an NVS partition image (esp_nvs.py) flashed compressed at the product's
offset, verified twice: the MD5 the chip computes of the flash, and the partition read back
and parsed as NVS, whose entries must be the ones meant, and byte for byte.

A pre-claimed product's certificate files (the certificate step's device.key, device.crt,
ca.crt, provision.json5) become entries of its `cert_namespace` in the same partition
(esp_certs.py): each is written by reading the partition back (the key lives only on the
unit), setting that entry, rebuilding the whole image (the factory namespace exactly as
Write made it) and flashing it; verified as the partition is, plus the entry itself. Such a
unit is reset only after its last file (provision.json5) verified, so the one session spans
the key, the wait for the certificate and the files (or at `release()`, when no certificate
step follows: `factory provision`). Plugged in again, such a unit's partition is not the
factory image (the entries are there too): its factory namespace is checked entry by entry,
and the certificate step re-verifies each entry, writing a damaged one again.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import serial
from esptool.logger import log as esptool_log
from esptool.util import FatalError

from factory.config import Product
from factory.config.drivers import EsptoolSettings
from factory.units.certificate import PROVISION_FILE
from factory.units.driver import Identity, Verification
from factory.units.errors import (
    NotInBootloader,
    ProtocolError,
    UnitError,
    UnitGone,
    UnitRefused,
    VerifyMismatch,
)
from factory.units.esp_certs import entry_key
from factory.units.esp_edges import (
    bounded_frames,
    device_node,
    quietly_close,
    unit_error,
    untraced,
)
from factory.units.esp_link import EspLink
from factory.units.esp_nvs import (
    Extra,
    NvsError,
    Value,
    build_image,
    entries,
    read_image,
)
from factory.units.esp_partition import Partition, Plan, md5_hex

_T = TypeVar("_T")
# Threads are made as fixtures need them, up to one per fixture of a large station.
THREADS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="esptool")
esptool_log.set_verbosity("silent")  # the station logs and journals; esptool must not print
untraced()
bounded_frames()


class EsptoolDriver:
    """One ESP32 unit on one fixture's device path."""

    def __init__(self, device: str, baud: int, settings: EsptoolSettings) -> None:
        self._device, self._baud, self._settings = device, baud, settings
        self._link = EspLink(device, baud, settings)
        self._partition = Partition(self._call, self._link)
        self._plans: dict[str, Plan] = {}
        # A pre-claimed product's partition without its certificate entries (no secret), and
        # the device path its certificate files go beside; then each file's image and
        # entries between its write and its verify (they hold the key: dropped at verify).
        self._base: Plan | None = None
        self._where = ""
        self._written: dict[str, tuple[bytes, Extra]] = {}
        self._flashed = ""  # the device path written in this session (not to be excused)
        self._deferred = False  # verified, its reset left to its last certificate file
        self.silence: UnitError | None = None  # why the last present() was False
        # While a verified unit stays, it is never reset again (that would stop the
        # application it was reset into, every poll): "app" when it runs its application,
        # "rom" when it was left in its bootloader, None when no verified unit is here.
        self._left_in: str | None = None
        self._node: tuple[int, ...] | None = None  # the port's device node it was verified on

    # The pipeline's side.

    def render(self, product: Product, uci: str, extra: Extra | None = None,
               ) -> tuple[str, bytes]:
        """Where the unit's data goes and the NVS image that goes there (with an upstream's
        `extra` namespaces, e.g. RainMaker's rmaker_creds)."""
        layout = product.nvs
        items, extra = entries(product, uci), extra or {}
        image = build_image(layout, items, extra)
        where = f"nvs:{layout.namespace}@{layout.offset:#x}"
        certified = product.claim == "pre" and not extra  # RainMaker's come as `extra`
        self._plans[where] = Plan(layout, items, extra, certified)
        self._base = Plan(layout, items, certified=True) if certified else None
        self._where = where
        return where, image

    async def read_nvs(self, product: Product) -> dict[str, dict[str, Value]]:
        """The unit's NVS partition as it holds it now: namespace → key → value."""
        layout = product.nvs
        back = await self._call(lambda: self._link.read(layout.offset, layout.size))
        try:
            return read_image(back)
        except NvsError as exc:
            raise VerifyMismatch(f"the unit's partition at {layout.offset:#x} is no NVS "
                                 f"image: {exc}") from exc

    async def present(self) -> bool:
        """A fresh session: whether a chip syncs and is detected on the port now. While the
        unit that was here may still be: one running its application is there as long as
        its port is (nothing is sent to it); one left in its ROM is synced without a reset."""
        await self._close()
        self._written.clear()
        self._flashed, self._deferred = "", False
        if self._left_in == "app":
            # A unit unplugged and another plugged in between two polls leaves the path
            # there, on a new device node (a new pty, a USB adapter enumerated again).
            if await self._call(lambda: device_node(self._device)) != self._node:
                raise UnitGone(f"{self._device} was unplugged")
            return True
        try:
            await self._call(self._connect)
        except UnitGone:
            raise
        except UnitError as exc:
            self.silence, self._left_in = exc, None
            return False
        self.silence = None
        return True

    async def wake(self) -> None:
        if self._link.esp is None:
            await self._call(self._connect)

    async def identify(self) -> Identity:
        if self._left_in == "app":
            raise NotInBootloader("the unit runs its application since it was verified; "
                                  "the fixture waits for it to be unplugged")
        await self.wake()
        esp = self._link.esp
        mac, chip = await self._call(lambda: (esp.read_mac(), esp.CHIP_NAME))
        return Identity(hardware_id=":".join(f"{b:02x}" for b in mac), model=chip,
                        firmware="rom-bootloader")

    async def write_file(self, path: str, data: bytes) -> None:
        if (key := self._entry(path)) is not None:
            await self._write_entry(path, key, data)
            return
        plan = self._plan(path, data)
        self._left_in = None  # a unit being written is no verified unit yet
        await self._call(lambda: self._link.flash(plan.layout.offset, data))
        self._flashed = path

    async def verify_file(self, path: str, data: bytes) -> Verification:
        if (key := self._entry(path)) is not None:
            return await self._verify_entry(path, key, data)
        plan = self._plan(path, data)
        offset = plan.layout.offset
        try:
            theirs = await self._call(lambda: self._link.md5(offset, data))
            if plan.certified and theirs != md5_hex(data) and self._flashed != path:
                await self._partition.factory_intact(plan, path)  # certified before (a re-plug)
                digest = theirs
            else:
                digest = await self._partition.check(path, plan, data, plan.extra, theirs)
        except BaseException:
            await self._close()
            raise
        finally:
            self._plans.pop(path, None)  # it may hold the unit's key (an upstream's extra)
        if plan.certified:  # the session goes on with the certificate files
            self._deferred = True
        else:
            await self._leave()
        return Verification("md5+nvs-readback", digest, len(data))

    async def release(self) -> None:
        """Reset a pre-claimed product's verified unit as configured when no certificate
        step followed its factory data (`factory provision`): its session is still open."""
        if self._deferred:
            await self._leave()

    async def read_file(self, path: str) -> bytes:
        key = self._entry(path)
        if key is None or self._base is None:
            raise UnitRefused(f"esptool units keep no files ({path}); their data is an NVS "
                              "partition")
        namespace = self._base.layout.cert_namespace
        value = (await self._partition.held(self._base, path)).get(namespace, {}).get(key)
        if value is None:
            raise UnitRefused(f"the unit's NVS namespace {namespace!r} holds no {key}")
        return value if isinstance(value, bytes) else str(value).encode()

    async def make_key(self, path: str, common_name: str) -> str | None:
        return None  # the ROM cannot make keys: the station makes one

    # A pre-claimed product's certificate files, as entries of its cert_namespace.

    def _entry(self, path: str) -> str | None:
        return entry_key(path, self._where) if self._base is not None else None

    async def _write_entry(self, path: str, key: str, data: bytes) -> None:
        assert self._base is not None
        self._left_in = None
        image, extra = await self._partition.rebuilt(self._base, path, data, key)
        offset = self._base.layout.offset
        await self._call(lambda: self._link.flash(offset, image))
        self._written[path] = image, extra

    async def _verify_entry(self, path: str, key: str, data: bytes) -> Verification:
        plan = self._base
        assert plan is not None
        # A mismatch keeps the session: the certificate step writes the files again in it.
        written = self._written.pop(path, None)
        image, extra = written or await self._partition.rebuilt(plan, path)
        digest = await self._partition.check(path, plan, image, extra)
        held = next((e.value for e in extra.get(plan.layout.cert_namespace, ())
                     if e.key == key), None)
        if held != data:  # the image was rebuilt from what the unit holds
            raise VerifyMismatch(f"the unit's {plan.layout.cert_namespace}.{key} is not "
                                 f"{posixpath.basename(path)} as meant")
        if posixpath.basename(path) == PROVISION_FILE:  # the certificate step's last file
            await self._leave()
        return Verification("md5+nvs-readback", digest, len(data))

    async def _leave(self) -> None:
        """Reset the verified unit as configured and end the session."""
        self._deferred = False
        try:
            await self._call(self._link.reset)
            if self._settings.after == "no-reset":
                self._left_in = "rom"
            elif self._settings.port_goes_with_unit:
                self._left_in = "app"
            self._node = await self._call(lambda: device_node(self._device))
        finally:
            await self._close()

    # esptool's side, each run in the worker thread.

    def _plan(self, path: str, data: bytes) -> Plan:
        plan = self._plans.get(path)
        if plan is None or len(data) != plan.layout.size:
            raise UnitRefused(f"esptool units take only their NVS partition, not {path}")
        return plan

    def _connect(self) -> None:
        self._link.connect(in_rom=self._left_in == "rom")

    async def _close(self) -> None:
        esp = self._link.detach()
        if esp is not None:
            await asyncio.get_running_loop().run_in_executor(THREADS, quietly_close, esp)

    async def _call(self, work: Callable[[], _T]) -> _T:
        """Run esptool in the worker thread; its errors become the unit's."""
        try:
            return await asyncio.get_running_loop().run_in_executor(THREADS, work)
        except UnitError:
            await self._close()
            raise
        except (serial.SerialException, OSError) as exc:
            await self._close()
            if "Inappropriate ioctl" in str(exc):
                raise ProtocolError(f"{self._device} has no modem lines to reset the chip "
                                    "with; set [fixtures.esptool] before = \"no-reset\" "
                                    "and after = \"soft-reset\" or \"no-reset\"") from exc
            raise UnitGone(f"the unit went away ({exc})") from exc
        except FatalError as exc:
            await self._close()
            raise unit_error(str(exc), self._device) from exc

