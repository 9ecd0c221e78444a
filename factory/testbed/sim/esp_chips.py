"""What the simulated ESP chips answer about themselves: the facts esptool reads to tell the
chips apart and to find their MAC, taken from esptool's targets/*.py (v5) and written down
here, so the simulator does not lean on the code it is refereed by."""

from __future__ import annotations

import struct
from dataclasses import dataclass

CHIP_DETECT_MAGIC_REG = 0x40001000  # a ROM address that reads differently on each chip
SFDP_SIGNATURE = 0x50444653  # "SFDP": what a SPI NOR flash answers at SFDP address 0
FLASH_ID_4MB = 0x1640EF  # RDID of a 4 MiB Winbond part: vendor 0xEF, type 0x40, size 0x16


@dataclass(frozen=True)
class Chip:
    name: str
    magic: int  # read at CHIP_DETECT_MAGIC_REG
    chip_id: int | None  # in GET_SECURITY_INFO's answer; None: the ROM lacks the command
    mac_reg: int  # the first eFuse word holding the MAC
    mac_layout: str  # "esp32": words 1 and 2 of BLK0; "words": MAC_EFUSE_REG and the next
    spi_base: int
    spi_usr2: int  # offsets from spi_base
    spi_w0: int
    uart_clkdiv_reg: int

    def mac_words(self, mac: bytes) -> dict[int, int]:
        """The eFuse registers holding `mac` (6 bytes) and what they read."""
        high = int.from_bytes(mac[0:2], "big")
        low = int.from_bytes(mac[2:6], "big")
        if self.mac_layout == "esp32":  # BLK0 word 2 also holds the MAC's CRC, above it
            return {self.mac_reg + 4: low, self.mac_reg + 8: high | (_crc8(mac) << 16)}
        return {self.mac_reg: low, self.mac_reg + 4: high}

    def security_info(self) -> bytes:
        """GET_SECURITY_INFO's answer: no security flags, no keys, the chip id."""
        assert self.chip_id is not None
        return struct.pack("<IBBBBBBBBII", 0, 0, 0, 0, 0, 0, 0, 0, 0, self.chip_id, 0)


CHIPS: dict[str, Chip] = {
    "esp32": Chip("ESP32", magic=0x00F01D83, chip_id=None, mac_reg=0x3FF5A000,
                  mac_layout="esp32", spi_base=0x3FF42000, spi_usr2=0x24, spi_w0=0x80,
                  uart_clkdiv_reg=0x3FF40014),
    "esp32c3": Chip("ESP32-C3", magic=0x1B31506F, chip_id=5, mac_reg=0x60008844,
                    mac_layout="words", spi_base=0x60002000, spi_usr2=0x20, spi_w0=0x58,
                    uart_clkdiv_reg=0x60000014),
    "esp32s3": Chip("ESP32-S3", magic=0x00000009, chip_id=9, mac_reg=0x60007044,
                    mac_layout="words", spi_base=0x60002000, spi_usr2=0x20, spi_w0=0x58,
                    uart_clkdiv_reg=0x60000014),
}


def _crc8(data: bytes) -> int:
    """The ESP32 MAC's CRC-8 (polynomial 0x07, reflected as the ROM computes it)."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc
