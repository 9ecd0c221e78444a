"""The esptool driver's session with one chip: esptool's own calls, synchronous, each run in
the driver's worker thread (esp.py). It opens the device itself and holds it exclusively
while a session lasts."""

from __future__ import annotations

import zlib
from typing import Any

from esptool import cmds

from factory.config.drivers import EsptoolSettings
from factory.units.errors import UnitRefused
from factory.units.esp_edges import flash_bytes, quietly_close


class EspLink:
    """esptool on one device path: a session (an ESPLoader) when one is open."""

    def __init__(self, device: str, baud: int, settings: EsptoolSettings) -> None:
        self._device, self._baud, self._settings = device, baud, settings
        self.esp: Any = None  # an esptool ESPLoader while a session is open
        self._flasher = False  # the stub runs and the flash is attached

    def detach(self) -> Any:
        """The session's loader (to be closed), None when there is none; none open after."""
        esp, self.esp, self._flasher = self.esp, None, False
        return esp

    def connect(self, in_rom: bool = False) -> None:
        """A new session; `in_rom`: the chip was left in its bootloader (no reset)."""
        before = "no-reset" if in_rom else self._settings.before
        self.esp = cmds.detect_chip(self._device, self._baud, before,
                                     connect_attempts=self._settings.connect_attempts)
        self._flasher = False

    def ready(self) -> Any:
        """The session with the stub running, at the flashing rate, the flash attached."""
        if self.esp is None:
            self.connect()
        if not self._flasher:
            self.esp = cmds.run_stub(self.esp)
            if self._settings.flash_baud > self._baud:
                self.esp.change_baud(self._settings.flash_baud)
            cmds.attach_flash(self.esp)
            self._flasher = True
        return self.esp

    def flash(self, offset: int, image: bytes) -> None:
        esp = self.ready()
        size = cmds.detect_flash_size(esp)
        if size and offset + len(image) > flash_bytes(size):
            raise UnitRefused(f"the NVS partition ends at {offset + len(image):#x}, past the "
                              f"unit's {size} of flash")
        packed = zlib.compress(image, 9)
        blocks = esp.flash_defl_begin(len(image), len(packed), offset)
        step = esp.FLASH_WRITE_SIZE
        for seq in range(blocks):
            esp.flash_defl_block(packed[seq * step:(seq + 1) * step], seq)
        esp.flash_defl_finish(False)

    def md5(self, offset: int, image: bytes) -> str:
        """The chip's MD5 (hex) of the flash where `image` should be."""
        theirs: str = self.ready().flash_md5sum(offset, len(image))
        return theirs.lower()

    def read(self, offset: int, size: int) -> bytes:
        data: bytes = self.ready().read_flash(offset, size)
        return data

    def reset(self) -> None:
        esp = self.esp
        if esp is None:
            return
        if self._settings.after != "soft-reset" or esp.CHIP_NAME == "ESP8266":
            cmds.reset_chip(esp, self._settings.after)
            return
        # esptool soft-resets only an ESP8266's stub. Elsewhere the stub reboots into the
        # ROM bootloader (at its first rate), which a new session tells to run the
        # application, as `esptool --no-stub --after soft-reset` does.
        if esp.IS_STUB:
            esp.soft_reset(True)
        self.esp = None
        quietly_close(esp)
        rom = cmds.detect_chip(self._device, self._baud, "no-reset",
                               connect_attempts=self._settings.connect_attempts)
        try:
            rom.run()
        finally:
            quietly_close(rom)
