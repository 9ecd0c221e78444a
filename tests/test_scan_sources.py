"""Where label scans come from, each for real: the HTTP API (a real aiohttp server), and a
serial scanner (a simulated one on a real pseudo-terminal), both feeding a fixture that runs
a simulated unit on another pty, as `factory serve` runs it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from factory import uci as uci_codec
from factory.config import Fixture, StationConfig
from factory.config.scanner import ScannerSettings, Scanning
from factory.journal.interface import Journal
from factory.journal.records import IssueRequest
from factory.testbed.sim.pty import SimPty
from factory.tokens import new_token, token_hash
from factory.units.fixture import FixtureRunner
from factory.units.label_scans import with_scans
from factory.units.pipeline import DEFAULT_STEPS
from factory.units.scanner import SerialScanner
from factory.units.scans import ScanDesk
from factory.web.app import make_app
from tests.conftest import OTHER_PRODUCT, PRODUCT
from tests.test_fixtures import DEVICE, plugged, read_device, until

pytestmark = pytest.mark.slow
MAC = "02:00:00:00:05:01"
BIND = Scanning(bind="scan")


async def sheet(journal: Journal, count: int, pid: str = PRODUCT) -> list[str]:
    ucis = (await journal.issue(IssueRequest(product=pid, actor="test", count=count))).ucis
    for u in ucis:
        await journal.record(u, "labelled", "test", {"sheet": "s.pdf"}, state="labelled")
    return ucis


@contextlib.asynccontextmanager
async def bind_fixture(config: StationConfig, journal: Journal, desk: ScanDesk, port: Path,
                       scanning: Scanning = BIND
                       ) -> AsyncIterator[FixtureRunner]:
    spec = Fixture(name="f1", port=str(port), driver="framed", product=PRODUCT,
                   device_path=DEVICE, poll_interval=0.05, scanning=scanning)
    product = config.product(PRODUCT)
    assert product is not None
    runner = FixtureRunner(spec, product, journal, with_scans(DEFAULT_STEPS, scanning, desk))
    desk.add_fixture(runner.status)
    task = asyncio.create_task(runner.run_forever())
    try:
        yield runner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def state_is(runner: FixtureRunner, state: str) -> None:
    async def check() -> bool:
        return runner.status.state == state
    await until(check)


async def test_scans_over_the_api(tmp_path: Path, config: StationConfig,
                                  journal: Journal) -> None:
    desk = ScanDesk()
    operator, viewer = new_token(), new_token()
    await journal.add_token("op", "operator", token_hash(operator))
    await journal.add_token("screen", "viewer", token_hash(viewer))
    labels = await sheet(journal, 2)
    other = await sheet(journal, 1, OTHER_PRODUCT)
    link = tmp_path / "f1"
    auth = {"Authorization": f"Bearer {operator}"}
    async with TestClient(TestServer(make_app(config, journal, desk=desk),
                                     host="127.0.0.1")) as client, \
            bind_fixture(config, journal, desk, link) as runner:

        async def scan(code: str, headers: dict[str, str] = auth, name: str = "f1",
                       status: int = 200) -> dict[str, Any]:
            resp = await client.post(f"/api/v1/fixtures/{name}/scan", json={"code": code},
                                     headers=headers)
            assert resp.status == status, await resp.text()
            return dict(await resp.json(content_type=None))

        # nothing plugged in: the fixture is not waiting for a scan
        await state_is(runner, "port-error")  # it has looked at its port (no race with start)
        not_waiting = await scan(labels[0], status=409)
        assert "not waiting for a scan (it is port-error)" in not_waiting["detail"]
        assert "ignored" not in runner.status.reason  # a port problem's words stay shown
        assert (await scan(labels[0], name="f9", status=404))["status"] == 404
        assert (await scan(labels[0], {"Authorization": f"Bearer {viewer}"},
                           status=403))["status"] == 403
        async with plugged(link, tmp_path / "unit", MAC):
            await state_is(runner, "scanning")
            refused = await scan(other[0])
            assert refused["accepted"] is False and OTHER_PRODUCT in refused["message"]
            assert OTHER_PRODUCT in runner.status.reason
            assert (await scan("???"))["accepted"] is False
            accepted = await scan(f"https://claim.example.com/c/{labels[1]}")
            assert accepted == {"fixture": "f1", "accepted": True, "uci": labels[1],
                                "human": uci_codec.human(labels[1]),
                                "message": accepted["message"]}
            await state_is(runner, "done")
            assert read_device(tmp_path / "unit")["id"] == labels[1]
        unit = await journal.unit(labels[1])
        assert unit.hardware_id == MAC.replace(":", "") and unit.state == "verified"
        assert unit.last("bound") is not None


@pytest.mark.parametrize("suffix", ["CR", "LF", "CRLF", "Tab"])
async def test_scans_from_a_serial_scanner(tmp_path: Path, config: StationConfig,
                                           journal: Journal, suffix: str) -> None:
    desk = ScanDesk()
    labels = await sheet(journal, 2)
    scanner_pty = SimPty(baud=9600)  # a USB-CDC scanner paced like a real serial line
    settings = ScannerSettings(port=scanner_pty.path, suffix=suffix)
    end = settings.terminator
    link = tmp_path / "f1"
    scanning = Scanning(bind="scan", scanner=settings)
    async with bind_fixture(config, journal, desk, link, scanning) as runner:
        reader = asyncio.create_task(SerialScanner("f1", settings, desk).run_forever())
        try:
            async with plugged(link, tmp_path / "unit", MAC):
                await state_is(runner, "scanning")
                await scanner_pty.write(b"not a label" + end)
                await until(_reason(runner, "holds no UCI"))
                await scanner_pty.write(uci_codec.human(labels[1]).encode() + end)
                await state_is(runner, "done")
                await scanner_pty.write(labels[0].encode() + end)  # nobody waits for it
                await until(_reason(runner, "not waiting for a scan (it is done)"))
                assert runner.status.state == "done"
            assert read_device(tmp_path / "unit")["id"] == labels[1]
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            scanner_pty.hangup()
    assert (await journal.unit(labels[1])).last("bound", source="serial") is not None
    assert (await journal.unit(labels[0])).last("bound") is None


def _reason(runner: FixtureRunner, text: str) -> Any:
    async def check() -> bool:
        return text in runner.status.reason
    return check


def test_scanning_settings_are_read_from_the_config(tmp_path: Path) -> None:
    from factory.config import ConfigError, load
    from tests.conftest import CONFIG_TEXT, write_config
    fixture = f"""
[[fixtures]]
name = "f1"
port = "/dev/ttyUSB0"
driver = "framed"
product = "{PRODUCT}"
bind = "scan"
scan_check = true

[fixtures.scanner]
port = "/dev/ttyACM0"
suffix = "Tab"
"""
    config = load(write_config(tmp_path, CONFIG_TEXT + fixture))
    assert config.fixtures[0].scanning == Scanning(
        "scan", True, ScannerSettings("/dev/ttyACM0", 9600, "Tab"))
    for wrong, key in (('bind = "scan"', 'bind = "scanned"'),
                       ('suffix = "Tab"', 'suffix = "ETX"'),
                       ('port = "/dev/ttyACM0"', 'port = "COM3"')):
        with pytest.raises(ConfigError) as caught:
            load(write_config(tmp_path, CONFIG_TEXT + fixture.replace(wrong, key)))
        assert "fixtures[0]" in str(caught.value)
    lone = fixture.replace('bind = "scan"\nscan_check = true\n', "")
    with pytest.raises(ConfigError, match="never waits for a scan"):
        load(write_config(tmp_path, CONFIG_TEXT + lone))
    assert load(write_config(tmp_path, CONFIG_TEXT)).fixtures == ()
