"""Each driver's settings, as parsed from a fixture's config table (frozen, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsoleSettings:
    """A unit whose serial console is a POSIX shell."""

    prompt: str = r"[#$] ?$"  # regex the shell's prompt matches (end of what it printed)
    login_user: str = ""  # answered to a `login:` prompt when set
    login_password: str = ""  # never logged or journaled
    identify_command: str = "cat /sys/class/net/eth0/address"
    timeout: float = 5.0  # seconds for one command's answer
    chunk_size: int = 768  # base64 characters per line sent (the tty's line buffer is 4 KiB)


@dataclass(frozen=True)
class FramedSettings:
    """A unit running the framed factory protocol (docs/framed-protocol.md)."""

    timeout: float = 2.0  # seconds for one reply frame
    retries: int = 3  # resends of a frame that got no reply or a corrupt one
    chunk_size: int = 1024  # payload bytes per PUT/GET frame


@dataclass(frozen=True)
class EsptoolSettings:
    """An ESP32-family unit reached through its ROM bootloader with esptool (≥ 5)."""

    # How esptool gets the chip into its bootloader: toggling DTR/RTS (a USB-UART bridge),
    # the chip's own USB-Serial/JTAG, or not at all (the chip is already there: boot button
    # held, or a simulated chip on a pty, which has no modem lines); no-reset-no-sync also
    # skips the SYNC (a chip already synced through a pass-through).
    before: str = "default-reset"  # one of BEFORE
    # What the unit does once verified: boot its application (RTS, the chip's watchdog on
    # USB-Serial/JTAG boards, or soft-reset: the ROM told to run it, for fixtures wired
    # with RX/TX only), or stay in the bootloader.
    after: str = "hard-reset"  # one of AFTER
    flash_baud: int = 460800  # the rate the stub is switched to for flashing (≤ the baud: kept)
    # Whether the unit's serial port goes away when it is unplugged (a board's own USB
    # bridge or the chip's USB-Serial/JTAG). Then a verified unit reset into its application
    # is left alone until its port goes; a fixture whose bridge stays (pogo pins) sets
    # false, and the station resets the unit every poll to see whether another took its place.
    port_goes_with_unit: bool = True
    connect_attempts: int = 2  # esptool's tries to sync per connection


# esptool's own names for its --before and --after modes (esptool ≥ 5).
BEFORE = ("default-reset", "usb-reset", "no-reset", "no-reset-no-sync")
AFTER = ("hard-reset", "watchdog-reset", "soft-reset", "no-reset")
