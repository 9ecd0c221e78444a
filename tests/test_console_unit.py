"""The console driver against a real `sh` on a real pseudo-terminal (factory.testbed.sim.console):
files are read straight from the unit's disk (its root directory)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import os
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from factory.config.drivers import ConsoleSettings
from factory.testbed.sim.console import run_console_unit
from factory.testbed.sim.pty import Misbehaviour, SimPty
from factory.units.console import ConsoleDriver
from factory.units.console_commands import posix_cksum, write_commands
from factory.units.errors import (
    ProtocolError,
    UnitGone,
    UnitRefused,
    UnitTimeout,
    VerifyMismatch,
)
from factory.units.port import Port, open_port

MAC = "02:5e:c0:11:aa:07"
SETTINGS = ConsoleSettings(identify_command="cat sys/class/net/eth0/address", timeout=1.0)
DEVICE = "config/device.json5"
UNIT_TOOLS = ("base64", "cat", "chmod", "cksum", "md5sum", "mkdir", "mv", "rm", "sha256sum", "wc")
# A device.json5 as hostile to a shell as we can make it: every quoting character, command
# substitutions, a newline in a string, control bytes and bytes that are not UTF-8.
HOSTILE = (b"// device.json5\n{\n  uci: '01H4R15D3Q7K9M2X8Z5V6W4T0N',\n"
           b"  note: \"it's $(touch pwned-dollar) and `touch pwned-tick` and ${HOME}\",\n"
           b"  path: 'a\\\\b\\n\\tc', quote: \"'\\\"\", bang: '!$?*[]~#;&|<>',\n"
           b"  raw: '\x00\x03\x04\x15\x1a\x7f\r\n\xff\xfe\xc3\x28',\n"
           b"  blob: '" + base64.b64encode(random.Random(5).randbytes(3000)) + b"',\n}\n")


@dataclasses.dataclass
class Unit:
    sim: SimPty
    root: Path
    port: Port
    driver: ConsoleDriver
    task: asyncio.Task[None]


def _children() -> list[str]:
    """This process's child processes, as `pid state` (a zombie shows as Z)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                found.append(f"{stat.parent.name} {fields[0]}")
    return found


@contextlib.asynccontextmanager
async def plugged(root: Path, settings: ConsoleSettings = SETTINGS, *, baud: int | None = None,
                  misbehaviour: Misbehaviour | None = None, login: tuple[str, str] | None = None,
                  shell: str = "/bin/sh") -> AsyncIterator[Unit]:
    """A simulated console unit on a pty, and the driver on the station's side of it."""
    children = _children()
    sim = SimPty(baud=baud, misbehaviour=misbehaviour)
    task = asyncio.create_task(run_console_unit(sim, root, MAC, login=login, shell=shell))
    port = await open_port(sim.path, baud or 115200)
    try:
        yield Unit(sim, root, port, ConsoleDriver(port, settings), task)
    finally:
        await port.close()
        sim.hangup()
        await asyncio.wait_for(task, 5)
        assert _children() == children, "the unit's shell outlived it"


def _shell_without(tmp_path: Path, *hidden: str) -> str:
    """A shell whose PATH holds a small unit's tools but `hidden`, like a unit built without
    them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in set(UNIT_TOOLS) - set(hidden):
        found = shutil.which(tool)
        assert found, f"the tests need {tool}"
        (bin_dir / tool).symlink_to(found)
    wrapper = tmp_path / "sh-without"
    wrapper.write_text(f'#!/bin/sh\nPATH={bin_dir} exec /bin/sh "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


async def test_wake_and_identify_read_the_mac_from_the_units_disk(tmp_path: Path) -> None:
    async with plugged(tmp_path) as unit:
        assert await unit.driver.present()
        await unit.driver.wake()
        assert (await unit.driver.identify()).hardware_id == MAC


async def test_a_hostile_file_lands_byte_for_byte_and_nothing_runs(tmp_path: Path) -> None:
    path = "etc/unit's config/device.json5"  # a space and a quote in the path, too
    async with plugged(tmp_path) as unit:
        await unit.driver.wake()
        (tmp_path / "etc" / "unit's config").mkdir(parents=True)
        (tmp_path / path).write_bytes(b"the old file")
        writes = unit.port.writes
        await unit.driver.write_file(path, HOSTILE)
        assert unit.port.writes - writes == len(write_commands(path, HOSTILE, 768)) >= 2
        verification = await unit.driver.verify_file(path, HOSTILE)
        stored = tmp_path / path
        assert stored.read_bytes() == HOSTILE
        assert stored.stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in stored.parent.iterdir()) == ["device.json5"]
        assert not list(tmp_path.rglob("pwned*"))
        assert (verification.algorithm, verification.digest, verification.size) == (
            "sha256", hashlib.sha256(HOSTILE).hexdigest(), len(HOSTILE))
        await unit.driver.write_file(path, b"")  # an empty file is a file too
        assert stored.read_bytes() == b""
        assert (await unit.driver.verify_file(path, b"")).size == 0


async def test_a_file_costs_little_more_than_its_base64_on_the_wire(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(12_000)
    async with plugged(tmp_path, baud=921_600) as unit:
        await unit.driver.wake()
        sent = unit.port.bytes_out
        await unit.driver.write_file(DEVICE, data)
        assert unit.port.bytes_out - sent < len(data) * 4 / 3 * 1.04 + 300
        assert (tmp_path / DEVICE).read_bytes() == data


@pytest.mark.parametrize(("hidden", "algorithm"), [
    (("sha256sum",), "md5"),
    (("sha256sum", "md5sum"), "cksum"),
])
async def test_verify_falls_back_to_what_the_unit_has(tmp_path: Path, hidden: tuple[str, ...],
                                                      algorithm: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    async with plugged(root, shell=_shell_without(tmp_path, *hidden)) as unit:
        await unit.driver.wake()
        await unit.driver.write_file(DEVICE, HOSTILE)
        verification = await unit.driver.verify_file(DEVICE, HOSTILE)
        assert verification.algorithm == algorithm
        tool = {"md5": "md5sum", "cksum": "cksum"}[algorithm]
        expected = subprocess.run([tool], input=HOSTILE, capture_output=True, check=True)
        assert verification.digest == expected.stdout.split()[0].decode()
        with pytest.raises(VerifyMismatch, match=verification.digest):
            await unit.driver.verify_file(DEVICE, HOSTILE + b" ")


async def test_a_line_lost_on_the_way_never_replaces_the_old_file(tmp_path: Path) -> None:
    rc = tmp_path / "lossy.rc"  # the second printf reports success but stores nothing
    rc.write_text('printf() { n=$((${n:-0}+1)); [ $n = 2 ] || command printf "$@"; }\n')
    lossy = tmp_path / "lossy-sh"
    lossy.write_text(f'#!/bin/sh\nENV={rc} exec /bin/sh "$@"\n')
    lossy.chmod(0o755)
    root = tmp_path / "root"
    (root / "config").mkdir(parents=True)
    (root / DEVICE).write_bytes(b"the old file")
    async with plugged(root, shell=str(lossy)) as unit:
        await unit.driver.wake()
        with pytest.raises(UnitRefused, match="check its size"):
            await unit.driver.write_file(DEVICE, HOSTILE * 3)
        assert (root / DEVICE).read_bytes() == b"the old file"


def test_posix_cksum_is_the_crc_cksum_prints() -> None:
    for data in (b"", b"a", b"abc", random.Random(3).randbytes(70_000)):
        printed = subprocess.run(["cksum"], input=data, capture_output=True, check=True)
        assert posix_cksum(data) == int(printed.stdout.split()[0])


async def test_login_with_user_and_password(tmp_path: Path) -> None:
    settings = dataclasses.replace(SETTINGS, login_user="root", login_password="s3cr3t!")
    async with plugged(tmp_path, settings, login=("root", "s3cr3t!")) as unit:
        await unit.driver.wake()
        assert (await unit.driver.identify()).hardware_id == MAC
    wrong = dataclasses.replace(settings, login_password="guess$(id)")
    async with plugged(tmp_path, wrong, login=("root", "s3cr3t!")) as unit:
        with pytest.raises(UnitRefused, match="refused the login as 'root'") as refused:
            await unit.driver.wake()
        assert "guess" not in refused.value.reason
    async with plugged(tmp_path, login=("root", "s3cr3t!")) as unit:
        with pytest.raises(UnitRefused, match="no login_user"):
            await unit.driver.wake()


async def test_a_silent_unit_times_out(tmp_path: Path) -> None:
    settings = dataclasses.replace(SETTINGS, timeout=0.3)
    async with plugged(tmp_path, settings, misbehaviour=Misbehaviour(silent=True)) as unit:
        with pytest.raises(UnitTimeout, match="did not answer"):
            await unit.driver.wake()
        assert not await unit.driver.present()


async def test_garbage_is_a_protocol_error(tmp_path: Path) -> None:
    settings = dataclasses.replace(SETTINGS, timeout=0.3)
    garbage = Misbehaviour(garbage=True, rng=random.Random(7))
    async with plugged(tmp_path, settings, misbehaviour=garbage) as unit:
        with pytest.raises(ProtocolError, match="not with a shell prompt"):
            await unit.driver.wake()
        garbage.garbage = False  # a prompt got through by chance: the command still fails
        await unit.driver.wake()
        garbage.garbage = True
        with pytest.raises(ProtocolError, match="never printed our marker"):
            await unit.driver.identify()


async def test_unplugged_mid_write_is_unit_gone_and_leaves_no_file(tmp_path: Path) -> None:
    async with plugged(tmp_path) as unit:
        await unit.driver.wake()
        await unit.driver.identify()
        unit.sim.misbehaviour.hangup_after_bytes = unit.sim.received + 5000
        with pytest.raises(UnitGone):
            await unit.driver.write_file(DEVICE, random.Random(2).randbytes(20_000))
        await asyncio.wait_for(unit.task, 5)
        assert not (tmp_path / DEVICE).exists()
        with pytest.raises(UnitGone):  # not False: the fixture must reopen the port
            await unit.driver.present()


async def test_storage_that_does_not_keep_the_bytes_fails_verify(tmp_path: Path) -> None:
    async with plugged(tmp_path, misbehaviour=Misbehaviour(corrupt_storage=True)) as unit:
        await unit.driver.wake()
        await unit.driver.write_file(DEVICE, HOSTILE)
        stored = (tmp_path / DEVICE).read_bytes()
        assert len(stored) == len(HOSTILE) and stored != HOSTILE
        ours, theirs = hashlib.sha256(HOSTILE).hexdigest(), hashlib.sha256(stored).hexdigest()
        with pytest.raises(VerifyMismatch, match=f"sha256 {theirs}.*sha256 {ours}"):
            await unit.driver.verify_file(DEVICE, HOSTILE)


async def test_a_path_the_unit_cannot_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "somefile").write_text("a regular file, not a directory\n")
    async with plugged(tmp_path) as unit:
        await unit.driver.wake()
        with pytest.raises(UnitRefused, match=r"somefile.*Not a directory"):
            await unit.driver.write_file("somefile/x/device.json5", HOSTILE * 3)
        with pytest.raises(UnitRefused, match="No such file"):
            await unit.driver.verify_file("missing/device.json5", HOSTILE)
        assert (await unit.driver.identify()).hardware_id == MAC  # still in step
        assert (tmp_path / "somefile").read_text() == "a regular file, not a directory\n"


# Printable ASCII that a shell would love to interpret, with lines longer than a chunk and no
# newline at the very end: it travels as quoted text, not base64.
PLAIN = (b"{\n  note: \"it's $(touch pwned-dollar) and `touch pwned-tick` ${HOME} '\\''\",\n"
         b"  bang: '!$?*[]~#;&|<>\\\\',\n  long: '" + b"ab'c%s%d\\n" * 300 + b"',\n\n\n}")


async def test_printable_text_travels_as_itself(tmp_path: Path) -> None:
    async with plugged(tmp_path, baud=921_600) as unit:
        await unit.driver.wake()
        sent = unit.port.bytes_out
        await unit.driver.write_file(DEVICE, PLAIN)
        wire = unit.port.bytes_out - sent
        stored = tmp_path / DEVICE
        assert stored.read_bytes() == PLAIN
        assert stored.stat().st_mode & 0o777 == 0o600
        assert not list(tmp_path.rglob("pwned*"))
        assert sorted(p.name for p in stored.parent.iterdir()) == ["device.json5"]
        assert (await unit.driver.verify_file(DEVICE, PLAIN)).size == len(PLAIN)
        # Quotes cost four bytes each; everything else is itself (base64 would be 4/3).
        assert wire < len(PLAIN) + 4 * PLAIN.count(b"'") + 400
        assert all("base64" not in c for c in write_commands(DEVICE, PLAIN, 768))
