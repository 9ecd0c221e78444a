"""`factory sim-unit --driver esptool`'s own options: which chip, and its faults."""

from __future__ import annotations

import argparse

ESP_CHIPS = ("esp32", "esp32c3", "esp32s3")


def add_esp_arguments(p: argparse.ArgumentParser) -> None:
    """The simulated ESP chip's options (ignored by the other drivers)."""
    group = p.add_argument_group("esptool units (a simulated ROM bootloader)")
    group.add_argument("--chip", choices=ESP_CHIPS, default="esp32c3")
    group.add_argument("--wrong-md5", action="store_true",
                       help="misbehave: SPI_FLASH_MD5 reports the digest of other bytes")
    group.add_argument("--write-protected", action="store_true",
                       help="misbehave: the flash refuses every erase and write")
    group.add_argument("--hangup-mid-flash", action="store_true",
                       help="misbehave: unplugged at the first block of flash data")
    group.add_argument("--corrupt-readback", action="store_true",
                       help="misbehave: READ_FLASH sends one bit flipped")
