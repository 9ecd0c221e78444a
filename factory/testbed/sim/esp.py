"""A simulated ESP32-family chip in its ROM bootloader, on a SimPty: what esptool talks to.

It answers the ROM's commands (SYNC, READ_REG / WRITE_REG with the SPI flash's user
commands, GET_SECURITY_INFO, SPI_ATTACH, SPI_SET_PARAMS, MEM_* for the flasher stub, FLASH_*
and FLASH_DEFL_*, SPI_FLASH_MD5, CHANGE_BAUDRATE) and, once the stub "runs" (it greets with
OHAI), the stub's (READ_FLASH, ERASE_REGION, its 2-byte status). Its flash is `flash.bin`
(4 MiB, erased = 0xFF) in the unit's folder, written through as NOR flash is: erasing sets
sectors to 0xFF, writing can only clear bits. The official esptool is its referee
(tests/test_esp_sim.py).
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from factory.testbed.sim.esp_chips import (
    CHIP_DETECT_MAGIC_REG,
    FLASH_ID_4MB,
    SFDP_SIGNATURE,
    Chip,
)
from factory.testbed.sim.esp_wire import (
    Command,
    Error,
    Request,
    SlipDecoder,
    WireError,
    checksum,
    parse_request,
    response,
    slip,
    words,
)
from factory.testbed.sim.pty import SimPty, Unplugged

FLASH_SIZE = 4 << 20
SECTOR = 0x1000
SPI_CMD_USR = 1 << 18  # set in SPI_CMD_REG: run the user command now
ROM_SYNC_VALUE = 0x20120707  # any non-zero value: "the ROM, not the stub, answered"


@dataclass
class EspFaults:
    """Faults of the chip itself (the line's are SimPty's Misbehaviour)."""

    wrong_md5: bool = False  # SPI_FLASH_MD5 reports a digest of other bytes
    write_protected: bool = False  # erasing and writing fail (a locked flash)
    corrupt_readback: bool = False  # READ_FLASH sends one bit flipped (a bad read path)
    hangup_mid_flash: bool = False  # unplugged at the first block of flash data
    corrupt_storage: bool = False  # one bit of what is written is stored wrong


class Flash:
    """The chip's SPI flash, kept in a file so it survives the simulator's restarts."""

    def __init__(self, path: Path, size: int = FLASH_SIZE) -> None:
        self.path, self.size = path, size
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.stat().st_size != size:
            path.write_bytes(b"\xff" * size)
        self._fd = os.open(path, os.O_RDWR)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def erase(self, offset: int, length: int) -> None:
        """Erase every sector the range touches."""
        start = offset - offset % SECTOR
        end = min(self.size, -(-(offset + length) // SECTOR) * SECTOR)
        if end > start:
            os.pwrite(self._fd, b"\xff" * (end - start), start)

    def program(self, offset: int, data: bytes) -> None:
        """NOR programming: bits only go from 1 to 0."""
        old = self.read(offset, len(data))
        if old.count(0xFF) != len(old):  # erased bytes take the data as it is
            # One AND over the whole range as big integers: a loop over bytes in Python
            # took milliseconds a block, longer than the block's wire time at 921600 baud.
            data = (int.from_bytes(old, "big") & int.from_bytes(data, "big")).to_bytes(
                len(data), "big")
        os.pwrite(self._fd, data, offset)

    def close(self) -> None:
        os.close(self._fd)


class ChipError(Exception):
    """A command the chip answers with a failed status."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.name)
        self.error = error


@dataclass
class _Download:
    """A FLASH_BEGIN or FLASH_DEFL_BEGIN in progress."""

    offset: int
    size: int  # bytes the host will send (uncompressed for DEFL)
    block_size: int
    inflate: zlib._Decompress | None = None  # DEFL only
    written: int = 0
    last_seq: int = -1
    mem: bool = False


@dataclass
class EspChip:
    """The chip's command handling; `run_esp_unit` is its wire."""

    chip: Chip
    mac: bytes
    flash: Flash
    sim: SimPty
    faults: EspFaults = field(default_factory=EspFaults)
    stub: bool = False
    app: bool = False  # left the bootloader: silent until unplugged
    regs: dict[int, int] = field(default_factory=dict)
    download: _Download | None = None

    def __post_init__(self) -> None:
        self.regs.update(self.chip.mac_words(self.mac))
        self.regs[CHIP_DETECT_MAGIC_REG] = self.chip.magic
        # 40 MHz crystal, as the ROM's UART divider shows it at the line's baud rate.
        self.regs[self.chip.uart_clkdiv_reg] = 40_000_000 // (self.sim.baud or 115200)
        self._rom_baud = self.sim.baud
        self._decoder = SlipDecoder()
        self._frames: list[bytes] = []

    async def frame(self) -> bytes:
        """The next SLIP frame from the host."""
        while not self._frames:
            self._frames += self._decoder.feed(await self.sim.read())
        return self._frames.pop(0)

    async def send(self, payload: bytes) -> None:
        frame = slip(payload)
        m = self.sim.misbehaviour
        if m.corrupt_next > 0:  # line noise: an escape byte followed by nonsense
            m.corrupt_next -= 1
            frame = frame[:len(frame) // 2] + b"\xdb\x00" + frame[len(frame) // 2:]
        await self.sim.write(frame)

    async def serve(self) -> None:
        while True:
            frame = await self.frame()
            if self.app:
                continue
            try:
                request = parse_request(frame)
            except WireError:
                continue  # the ROM ignores what is no request
            await self.handle(request)

    async def handle(self, request: Request) -> None:
        status = 2 if self.stub else 4
        try:
            value, data = await self._act(request)
        except ChipError as exc:
            await self.send(response(request.command, error=exc.error, status_bytes=status))
            return
        except WireError:
            await self.send(response(request.command, error=Error.BAD_DATA_LEN,
                                     status_bytes=status))
            return
        if request.command == Command.SYNC:  # the ROM answers a SYNC eight times
            for _ in range(1 if self.stub else 8):
                await self.send(response(Command.SYNC, 0 if self.stub else ROM_SYNC_VALUE,
                                         status_bytes=status))
            return
        await self.send(response(request.command, value, data, status_bytes=status))
        await self._after(request)

    async def _act(self, request: Request) -> tuple[int, bytes]:
        """The command's effect; its answer's value and data."""
        command, data = request.command, request.data
        if command == Command.SYNC:
            return 0, b""
        if command == Command.READ_REG:
            return self.regs.get(words(data, 1)[0], 0), b""
        if command == Command.WRITE_REG:
            for i in range(0, len(data) - len(data) % 16, 16):
                self._write_reg(*words(data[i:i + 16], 3))
            return 0, b""
        if command == Command.GET_SECURITY_INFO:
            if self.chip.chip_id is None or self.stub:
                raise ChipError(Error.INVALID_MESSAGE)
            return 0, self.chip.security_info()
        if command in (Command.SPI_ATTACH, Command.SPI_SET_PARAMS, Command.CHANGE_BAUDRATE):
            return 0, b""
        if command == Command.MEM_BEGIN:
            size, _, block_size, offset = words(data, 4)
            self.download = _Download(offset, size, block_size, mem=True)
            return 0, b""
        if command == Command.MEM_DATA:
            self._block(request, mem=True)
            return 0, b""
        if command == Command.MEM_END:
            self.download = None
            return 0, b""
        if command in (Command.FLASH_BEGIN, Command.FLASH_DEFL_BEGIN):
            self._begin(request)
            return 0, b""
        if command in (Command.FLASH_DATA, Command.FLASH_DEFL_DATA):
            self._block(request)
            return 0, b""
        if command in (Command.FLASH_END, Command.FLASH_DEFL_END):
            self._end(request)
            return 0, b""
        if command == Command.SPI_FLASH_MD5:
            return 0, self._md5(*words(data, 2))
        if command == Command.ERASE_REGION and self.stub:
            self._erase(*words(data, 2))
            return 0, b""
        if command == Command.READ_FLASH and self.stub:
            words(data, 4)
            return 0, b""
        raise ChipError(Error.INVALID_COMMAND if self.stub else Error.INVALID_MESSAGE)

    async def _after(self, request: Request) -> None:
        """What a command does once it was answered."""
        command, data = request.command, request.data
        if command == Command.MEM_END and words(data, 2)[0] == 0:  # run the entry point
            self.stub = True
            await self.send(b"OHAI")
        elif command == Command.CHANGE_BAUDRATE and self.sim.baud:
            new = words(data, 1)[0]
            if new:  # the ESP32 ROM's value is corrected for its clock; taken as is here
                self.sim.baud = new
        elif command == Command.READ_FLASH:
            await self._read_flash(*words(data, 3))
        elif command in (Command.FLASH_END, Command.FLASH_DEFL_END):
            stay = words(data, 1)[0]
            if self.stub and not stay:
                self.stub = False  # the stub reboots into the ROM bootloader,
                self.sim.baud = self._rom_baud  # which starts at the line's first rate
            elif not self.stub and request.command == Command.FLASH_END:
                self.app = True  # the ROM runs the application: no bootloader any more

    def _write_reg(self, addr: int, value: int, mask: int) -> None:
        base = self.chip.spi_base
        if addr == base and value & SPI_CMD_USR:
            self._spi_command()
            value &= ~SPI_CMD_USR  # done at once: the host's poll sees the bit clear
        self.regs[addr] = (self.regs.get(addr, 0) & ~mask) | (value & mask)

    def _spi_command(self) -> None:
        """The SPI flash's answer to the user command the host set up."""
        base = self.chip.spi_base
        opcode = self.regs.get(base + self.chip.spi_usr2, 0) & 0xFF
        address = self.regs.get(base + 4, 0)
        answers = {0x9F: FLASH_ID_4MB, 0x5A: SFDP_SIGNATURE if address == 0 else 0}
        self.regs[base + self.chip.spi_w0] = answers.get(opcode, 0)

    def _erase(self, offset: int, length: int) -> None:
        if offset + length > self.flash.size:
            raise ChipError(Error.FAILED_SPI_OP if self.stub else Error.FLASH_WRITE)
        if self.faults.write_protected:
            raise ChipError(Error.FAILED_SPI_OP if self.stub else Error.FLASH_WRITE)
        self.flash.erase(offset, length)

    def _begin(self, request: Request) -> None:
        size, _, block_size, offset = words(request.data, 4)
        deflate = request.command == Command.FLASH_DEFL_BEGIN
        self._erase(offset, size)
        self.download = _Download(offset, size, block_size,
                                  zlib.decompressobj() if deflate else None)

    def _block(self, request: Request, *, mem: bool = False) -> None:
        download = self.download
        if download is None or download.mem != mem:
            raise ChipError(Error.NOT_IN_FLASH_MODE)
        length, seq = words(request.data, 2)
        block = request.data[16:]
        if len(block) != length:
            raise ChipError(Error.BAD_DATA_LEN)
        if checksum(block) != request.checksum:
            raise ChipError(Error.BAD_DATA_CHECKSUM if self.stub else Error.INVALID_CRC)
        if seq == download.last_seq:
            return  # a block sent again after a lost answer: written once
        download.last_seq = seq
        if mem:
            return  # the stub's code goes to RAM; the simulator runs its own
        if self.faults.hangup_mid_flash:
            self.sim.hangup()
            raise Unplugged("unplugged mid-flash")
        if download.inflate is not None:
            try:
                block = download.inflate.decompress(block)
            except zlib.error as exc:
                raise ChipError(Error.INFLATE_ERROR) from exc
        else:
            block = block[:max(0, download.size - download.written)]
        if download.written + len(block) > max(download.size, len(block)):
            raise ChipError(Error.TOO_MUCH_DATA)
        if self.faults.write_protected:
            raise ChipError(Error.FAILED_SPI_OP if self.stub else Error.FLASH_WRITE)
        if self.faults.corrupt_storage and block:
            block = bytes([block[0] ^ 0x01]) + block[1:]
        self.flash.program(download.offset + download.written, block)
        download.written += len(block)

    def _end(self, request: Request) -> None:
        self.download = None

    def _md5(self, offset: int, length: int) -> bytes:
        if offset + length > self.flash.size:
            raise ChipError(Error.FLASH_READ)
        digest = hashlib.md5(self.flash.read(offset, length))  # noqa: S324 (the ROM's)
        if self.faults.wrong_md5:
            digest.update(b"\x00")
        return digest.digest() if self.stub else digest.hexdigest().encode()

    async def _read_flash(self, offset: int, length: int, packet: int) -> None:
        """The stub's READ_FLASH: packets of `packet` bytes, each acknowledged by the host
        with the count it holds, then the MD5 of what was sent."""
        data = bytearray(self.flash.read(offset, min(length, self.flash.size - offset)))
        if self.faults.corrupt_readback and data:
            data[len(data) // 2] ^= 0x01
        for start in range(0, len(data), max(1, packet)):
            await self.send(bytes(data[start:start + packet]))
            ack = await self.frame()
            if len(ack) != 4 or struct.unpack("<I", ack)[0] != min(len(data), start + packet):
                return  # the host gave up
        await self.send(hashlib.md5(data).digest())  # noqa: S324


async def run_esp_unit(sim: SimPty, root: Path, chip: Chip, mac: bytes,
                       faults: EspFaults | None = None) -> None:
    """Serve the ROM bootloader on `sim` until it is unplugged; flash in root/flash.bin."""
    flash = Flash(root / "flash.bin")
    unit = EspChip(chip, mac, flash, sim, faults or EspFaults())
    try:
        await unit.serve()
    except Unplugged:
        return
    finally:
        flash.close()
