"""Shell injection through the console driver, against a real `sh` on a real pty: whatever a
unit reports, whatever a path or a file holds, the unit's shell runs only the station's own
commands. Each payload tries to create a canary file; none may ever appear."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from factory.config import ConfigError, load
from factory.hardware import HardwareIdError, normalise
from factory.units.errors import UnitError
from tests.conftest import CONFIG_TEXT, PRODUCT, write_config
from tests.test_console_unit import plugged

CANARY = "pwned"


def payloads(canary: Path) -> list[str]:
    """Ways to smuggle `touch <canary>` into a shell line (and through a tty's line
    discipline: Ctrl-U kills what was typed before it, Ctrl-C interrupts, Ctrl-D ends)."""
    touch = f"touch {canary}"
    return [
        f"$({touch})", f"`{touch}`", f";{touch};", f"';{touch};'", f"\";{touch};\"",
        f"'\";{touch} #", f"\\';{touch};#", f"|{touch}", f"&&{touch}", f"&{touch}&",
        f"$(IFS=_;c=touch_{canary};$c)", f"${{x:-$({touch})}}", f"\n{touch}\n",
        f"a\n{touch}", f"\r{touch}\r", f"\x00;{touch}", f"x\x15{touch} #",
        f"x\x03{touch} #", f"x\x04{touch}", f"x\x16\n{touch}", f"x\x1b[A;{touch}",
        f"x\x7f\x7f;{touch}", f"é$({touch})ü", f"-o;{touch}", f"@FS''1@;{touch};#",
    ]


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder / CANARY


def nothing_ran(root: Path, canary: Path) -> None:
    # The canary is outside the unit's root: a literal path may well hold its name.
    assert not canary.exists(), f"an injected command ran on the unit's shell ({root})"


async def test_what_a_unit_reports_as_its_identity_is_only_read(tmp_path: Path,
                                                                canary: Path) -> None:
    root = tmp_path / "unit"
    address = root / "sys" / "class" / "net" / "eth0" / "address"
    async with plugged(root) as unit:
        await unit.driver.wake()
        for payload in payloads(canary):
            address.write_bytes(payload.encode() + b"\n")
            try:
                reported = (await unit.driver.identify()).hardware_id
            except UnitError:
                pass  # refused cleanly is fine; running it is not
            else:
                # Literal, but for what a tty does to output: \r\n -> \n, bytes as text.
                assert reported == payload.replace("\r", "").strip() or "\r" in payload, \
                    (payload, reported)
            nothing_ran(root, canary)
            # The station's hardware-id rule refuses it before it reaches a journal.
            with pytest.raises(HardwareIdError):
                normalise(reported)
        address.write_text("02:00:00:00:09:01\n")
        assert (await unit.driver.identify()).hardware_id == "02:00:00:00:09:01"


async def test_a_hostile_device_path_is_stored_literally_or_refused(tmp_path: Path,
                                                                    canary: Path) -> None:
    root = tmp_path / "unit"
    data = b'{id: "X"}\n'
    stored = refused = 0
    async with plugged(root) as unit:
        await unit.driver.wake()
        for number, payload in enumerate(payloads(canary)):
            path = f"cfg{number}/{payload}/device.json5"
            try:
                await unit.driver.write_file(path, data)
                await unit.driver.verify_file(path, data)
            except UnitError:
                refused += 1
                assert any(ord(c) < 32 or ord(c) == 127 for c in payload), payload
            else:
                stored += 1
                assert (root / path).read_bytes() == data, payload
            nothing_ran(root, canary)
        assert (await unit.driver.identify()).hardware_id  # still in step
    assert stored and refused


async def test_hostile_key_paths_and_names_never_reach_the_shell_as_syntax(
        tmp_path: Path, canary: Path) -> None:
    root = tmp_path / "unit"
    made = refused = 0
    async with plugged(root) as unit:
        await unit.driver.wake()
        for number, payload in enumerate(payloads(canary)):
            for path, name in ((f"k{number}/{payload}.key", "CN0"),
                               (f"n{number}/device.key", payload)):
                # The station writes device.json5 first, so the key's folder exists.
                with contextlib.suppress(ValueError, OSError):
                    (root / path).parent.mkdir(parents=True, exist_ok=True)
                try:
                    csr = await unit.driver.make_key(path, name)
                except UnitError:
                    refused += 1  # control bytes, or openssl's own -subj syntax (a '/')
                else:
                    assert csr is not None
                    subject = x509.load_pem_x509_csr(csr.encode()).subject
                    assert subject.rfc4514_string() == x509.Name([x509.NameAttribute(
                        NameOID.COMMON_NAME, name)]).rfc4514_string(), (payload, subject)
                    assert b"PRIVATE KEY" in (root / path).read_bytes()
                    made += 1
                nothing_ran(root, canary)
        assert (await unit.driver.identify()).hardware_id
    assert made and refused


async def test_hostile_file_contents_land_byte_for_byte(tmp_path: Path, canary: Path) -> None:
    root = tmp_path / "unit"
    async with plugged(root) as unit:
        await unit.driver.wake()
        for number, payload in enumerate(payloads(canary)):
            data = ("{note: '" + payload + "'}\n").encode()
            path = f"c{number}/device.json5"
            await unit.driver.write_file(path, data)
            assert (await unit.driver.verify_file(path, data)).size == len(data)
            assert (root / path).read_bytes() == data
            nothing_ran(root, canary)


def test_a_device_path_with_control_characters_is_refused_at_start(tmp_path: Path) -> None:
    """Ctrl-U in a path once reached the key step's command line, where the tty dropped
    everything typed before it (the quoting too) and the shell ran the rest."""
    for bad in ("config/x\x15touch pwned #/device.json5", "a\x03b/device.json5",
                "a\x7fb/device.json5", "a\tb/device.json5"):
        text = CONFIG_TEXT + f"""
[[fixtures]]
name = "line-1"
port = "unit.tty"
driver = "console"
product = "{PRODUCT}"
device_path = {json.dumps(bad)}
"""
        with pytest.raises(ConfigError, match="device_path"):
            load(write_config(tmp_path, text))
