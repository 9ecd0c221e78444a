"""ESP32 units end to end: a real `factory serve` with two esptool fixtures, each on a
simulated ESP32-C3 (`factory sim-unit --driver esptool`, its own process on a real pty),
labels kept as PDFs and registration with a real `factory registry serve`. What landed in
each chip's flash is read back as NVS; each label's QR is read back by zbar."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest

from factory.units import esp_nvs
from tests.conftest import CONFIG_TEXT, FACTORY, PRODUCT, ROOT, run_cli, write_config
from tests.processes import registry_process, station_process, until
from tests.test_faults_upstream import journal_rows
from tests.test_labels_station import CLAIM_URL, qr_codes

pytestmark = pytest.mark.slow
OFFSET, SIZE = 0x9000, 0x3000  # a small partition: a fast flash and read-back
MACS = ("7c:df:a1:00:03:3b", "7c:df:a1:00:03:3c")


def esp_config(folder: Path, registry_url: str = "", links: tuple[Path, ...] = ()) -> Path:
    """The test config's product with a small NVS partition and a kept label; esptool
    fixtures on `links` and an upstream when given."""
    product = CONFIG_TEXT.replace(
        'journal = "journal.sqlite"', f'journal = "journal.sqlite"\nlabels = "{ROOT}/labels"'
    ).replace('model = "AQ-100"', f"""model = "AQ-100"
label = "thermal-50x30"
qr = "{CLAIM_URL}"
fields = {{ hw_rev = 3, region = "EU" }}

[products.nvs]
offset = {OFFSET:#x}
size = {SIZE:#x}
""")
    fixtures = "".join(f"""
[[fixtures]]
name = "esp-{i}"
port = "{link.name}"
driver = "esptool"
product = "{PRODUCT}"
poll_interval = 0.1

[fixtures.esptool]
before = "no-reset"
after = "no-reset"
flash_baud = 921600
""" for i, link in enumerate(links, 1))
    upstream = f"""
[upstream]
kind = "http"
url = "{registry_url}/"
token_file = "registry.token"
retry_base = 0.2
retry_cap = 1
""" if registry_url else ""
    return write_config(folder, product + upstream + fixtures)


@asynccontextmanager
async def esp_sim(root: Path, link: Path, mac: str,
                  *faults: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`factory sim-unit --driver esptool --chip esp32c3` on `link`, paced at 115200 baud
    until the fixture's stub switches it to the flashing rate."""
    proc = await asyncio.create_subprocess_exec(
        *FACTORY, "sim-unit", "--driver", "esptool", "--chip", "esp32c3", "--root", str(root),
        "--link", str(link), "--hardware-id", mac, "--baud", "115200", *faults,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).startswith(b"/dev/pts/")
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def nvs_in_flash(root: Path) -> dict[str, esp_nvs.Value]:
    """The factory namespace of what the chip's flash holds at the partition."""
    with (root / "flash.bin").open("rb") as flash:
        flash.seek(OFFSET)
        return esp_nvs.read_image(flash.read(SIZE)).get("fctry", {})


def kinds(journal: Path, uci: str) -> list[str]:
    return [k for (k,) in journal_rows(
        journal, f"SELECT kind FROM events WHERE uci = '{uci}' ORDER BY seq")]


def test_factory_data_too_large_for_its_partition_stops_the_station_at_start(
        tmp_path: Path) -> None:
    text = esp_config(tmp_path, links=(tmp_path / "esp.tty",)).read_text()
    path = write_config(tmp_path, text.replace(
        'fields = { hw_rev = 3, region = "EU" }',
        "fields = { " + ", ".join(f'note{i} = "{"x" * 3000}"' for i in range(3)) + " }"))
    for command in (("config", "check", str(path)), ("serve",)):
        result = run_cli(path if command == ("serve",) else None, *command, check=False)
        assert result.returncode == 2, result
        assert f"{path}: products[0].nvs: the factory data needs more than the 0x3000 bytes" \
            in result.stderr
        assert "Traceback" not in result.stderr
    assert "OK" in run_cli(None, "config", "check",
                           str(esp_config(tmp_path, links=(tmp_path / "esp.tty",)))).stdout


async def test_a_station_provisions_labels_and_registers_esp32_units(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    roots = [tmp_path / f"unit{i}" for i in (1, 2)]
    links = [tmp_path / f"esp{i}.tty" for i in (1, 2)]
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(registry_process(tmp_path))
        (tmp_path / "registry.token").write_text(registry.token)
        config = esp_config(tmp_path, registry.url, tuple(links))
        for root, link, mac in zip(roots, links, MACS, strict=True):
            await stack.enter_async_context(esp_sim(root, link, mac))
        await stack.enter_async_context(station_process(config))

        def registered() -> set[str]:
            failures = journal_rows(journal, "SELECT kind, data FROM events WHERE kind IN "
                                             "('failed', 'fixture_failed')")
            assert not failures, failures  # a failed unit waits to be plugged in again
            return {u for (u,) in journal_rows(
                journal, "SELECT uci FROM events WHERE kind = 'registered'")}

        await until(lambda: len(registered()) == 2, 60, "both units registered")
        await until(lambda: len(journal_rows(
            journal, "SELECT 1 FROM events WHERE kind = 'labelled'")) == 2, 30,
            "both labels made")

    held = [nvs_in_flash(root) for root in roots]
    ucis = {str(h["uci"]) for h in held}
    assert ucis == registered() and len(ucis) == 2
    for h in held:
        assert h == {"uci": h["uci"], "product": PRODUCT, "hw_rev": 3, "region": "EU"}
    for uci in ucis:
        shown = json.loads(run_cli(config, "unit", uci, "--json").stdout)
        assert shown["hardware_id"] in {m.replace(":", "").upper() for m in MACS}
        steps = kinds(journal, uci)
        assert steps[:3] == ["issued", "written", "verified"]
        assert sorted(steps[3:]) == ["labelled", "registered"]  # both hang on verified
        (data,) = journal_rows(journal, "SELECT data FROM events WHERE kind = 'verified' "
                                        f"AND uci = '{uci}'")
        assert json.loads(data[0])["algorithm"] == "md5+nvs-readback"
        (labelled,) = journal_rows(journal, "SELECT data FROM events WHERE kind = "
                                            f"'labelled' AND uci = '{uci}'")
        assert qr_codes(Path(json.loads(labelled[0])["pdf"])) == [CLAIM_URL.format(uci=uci)]
    with sqlite3.connect(registry.db) as db:
        at_registry = dict(db.execute("SELECT id, hardware_id FROM devices").fetchall())
    assert set(at_registry) == ucis
    assert {hw.replace(":", "").upper() for hw in at_registry.values()} == \
        {m.replace(":", "").upper() for m in MACS}


def test_provision_command_flashes_an_esp32_and_soft_resets_it(tmp_path: Path) -> None:
    """`factory provision --driver esptool` on a port without modem lines: no reset to get
    into the bootloader, and the ROM told to run the application afterwards."""
    config, link, root = esp_config(tmp_path), tmp_path / "esp.tty", tmp_path / "unit"

    def provision() -> subprocess.CompletedProcess[str]:
        return run_cli(config, "provision", "--port", str(link), "--driver", "esptool",
                       "--product", PRODUCT, "--before", "no-reset", "--after", "soft-reset",
                       "--flash-baud", "921600", check=False)

    async def both() -> tuple[subprocess.CompletedProcess[str], ...]:
        async with esp_sim(root, link, MACS[0]):
            first = await asyncio.to_thread(provision)
            again = await asyncio.to_thread(provision)  # the chip runs its application now
        return first, again

    first, again = asyncio.run(both())
    assert first.returncode == 0, first.stderr
    uci = str(nvs_in_flash(root)["uci"])
    assert f"({uci}), nvs:fctry@{OFFSET:#x} verified" in first.stdout
    assert again.returncode == 1
    (failed,) = [line for line in again.stdout.splitlines() if "FAILED" in line]
    assert "no chip answers its ROM bootloader" in failed and "hold BOOT" in failed
    assert "Traceback" not in again.stdout + again.stderr
