"""Units serialized by their own Ioto agent (`serialized_by = "agent"`): the agent's answer is
the unit's serialization, so its label is made and its registration queued, durably and once,
before the agent hears its UCI. Over real HTTP on 127.0.0.1, a real journal, real label PDFs
read back with zbarimg."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import json5
import pytest
from aiohttp.test_utils import TestClient, TestServer

from factory.config import Fixture, StationConfig, load
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.labels.making import LabelMaker
from factory.labels.products import ProductLabels
from factory.station import unit_steps
from factory.status import snapshot
from factory.testbed.sim.console import run_console_unit
from factory.testbed.sim.pty import SimPty
from factory.units.fixture import FixtureRunner
from factory.web.app import make_app
from factory.web.keys import LIVE
from tests.conftest import CONFIG_TEXT, PRODUCT, ROOT, write_config
from tests.test_labels_station import CLAIM_URL, qr_codes

MAC = "7c:df:a1:00:03:3b"
SECTION = {"product": PRODUCT, "name": "Acme Air Sensor", "model": "AQ-100", "mac": MAC}
UPSTREAM = '\n[upstream]\nkind = "http"\nurl = "http://127.0.0.1:9/"\ntoken_file = "t"\n'


def agent_config(folder: Path, product_lines: str = "") -> StationConfig:
    (folder / "t").write_text("token\n")
    text = CONFIG_TEXT.replace(
        'journal = "journal.sqlite"', f'journal = "journal.sqlite"\nlabels = "{ROOT}/labels"'
    ).replace('model = "AQ-100"', f'model = "AQ-100"\nlabel = "thermal-50x30"\n'
                                  f'qr = "{CLAIM_URL}"\nserialized_by = "agent"{product_lines}')
    return load(write_config(folder, text + UPSTREAM))


class Line:
    def __init__(self, client: TestClient[Any, Any], journal: Journal, maker: LabelMaker,
                 config: StationConfig) -> None:
        self.client, self.journal, self.maker, self.config = client, journal, maker, config

    async def serialize(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post("/ioto/serialize", json=body)
        return resp.status, json5.loads(await resp.text())


@pytest.fixture
async def line(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Line]:
    lines = getattr(request, "param", "")
    config = agent_config(tmp_path, lines)
    journal = await open_journal(config.journal, config.station_id)
    maker = LabelMaker(config, journal, ProductLabels(config))
    try:
        async with TestClient(TestServer(make_app(config, journal, maker=maker),
                                         host="127.0.0.1")) as client:
            yield Line(client, journal, maker, config)
    finally:
        await journal.close()


async def test_the_answer_comes_with_a_label_and_a_queued_registration(line: Line) -> None:
    status, reply = await line.serialize(SECTION)
    assert status == 200 and list(reply) == ["id"]
    uci = reply["id"]
    unit = await line.journal.unit(uci)
    assert unit.hardware_id == "7CDFA100033B" and unit.state == "labelled"
    assert [e.kind for e in unit.events] == ["issued", "agent_serialized", "labelled"]
    pdf = Path(unit.last("labelled").data["pdf"])  # type: ignore[union-attr]
    assert qr_codes(pdf) == [CLAIM_URL.format(uci=uci)]  # the label names this unit
    entries = await line.journal.outbox_entries(None, uci, 10)
    assert [(e.action, e.state) for e in entries] == [("register", "pending")]


async def test_the_same_unit_again_gets_its_uci_and_no_second_label(line: Line) -> None:
    answers = [await line.serialize(SECTION) for _ in range(3)]
    assert {status for status, _ in answers} == {200}  # the agent takes nothing else
    assert len({reply["id"] for _, reply in answers}) == 1
    unit = await line.journal.unit(answers[0][1]["id"])
    kinds = [e.kind for e in unit.events]
    assert kinds.count("labelled") == 1 and kinds.count("agent_serialized") == 1
    assert len(await line.journal.outbox_entries(None, unit.uci, 10)) == 1
    assert len(list(line.config.printer.keep.glob("*.pdf"))) == 1


async def test_a_label_that_cannot_be_made_withholds_the_answer_until_it_is(
        line: Line, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent hears its UCI only once its label is made: a failure is a 503 (the agent
    asks again in 2 s), and the retry makes the label and answers the same UCI."""
    real = line.maker.make
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Path:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(28, "No space left on device")
        return await real(*args, **kwargs)

    monkeypatch.setattr(line.maker, "make", flaky)
    status, problem = await line.serialize(SECTION)
    assert status == 503 and "label could not be made" in problem["detail"]
    units, _ = await line.journal.units()
    assert [u.state for u in units] == ["issued"]  # issued and queued, not yet labelled
    status, reply = await line.serialize(SECTION)
    assert status == 200 and reply["id"] == units[0].uci
    unit = await line.journal.unit(units[0].uci)
    assert [e.kind for e in unit.events] == ["issued", "agent_serialized", "labelled"]


async def test_without_a_hardware_id_it_is_refused_where_the_product_requires_one(
        line: Line) -> None:
    section = {k: v for k, v in SECTION.items() if k != "mac"}
    status, problem = await line.serialize(section)
    assert status == 422
    assert "mac: is required" in problem["detail"] and "new label" in problem["detail"]
    assert await line.journal.stats() == {}


@pytest.mark.parametrize("line", ['\nagent_identity = "optional"'], indirect=True)
async def test_without_a_hardware_id_it_is_accepted_with_a_warning_where_allowed(
        line: Line, caplog: pytest.LogCaptureFixture) -> None:
    section = {k: v for k, v in SECTION.items() if k != "mac"}
    with caplog.at_level(logging.WARNING, "factory.ioto"):
        first = await line.serialize(section)
        second = await line.serialize(section)
    assert first[0] == second[0] == 200
    assert first[1]["id"] != second[1]["id"]  # each boot a new UCI, as documented
    assert sum("without a mac or hardware_id" in r.message for r in caplog.records) == 2
    # ... and on the status page's attention banner, with how often.
    snap = await snapshot.build(line.config, line.journal, line.client.app[LIVE])
    warned = [a for a in snap["attention"] if a["source"] == f"ioto:{PRODUCT}"]
    assert len(warned) == 1 and "(2 since the station started)" in warned[0]["what"]
    assert "without a mac or hardware id" in warned[0]["what"]
    assert "put each unit's mac" in warned[0]["action"]


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 15) -> None:
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def console_fixture(line: Line, root: Path, link: Path) -> AsyncIterator[FixtureRunner]:
    """A simulated console unit (a real sh) with MAC, and a fixture on it running the agent
    product's steps as the station wires them."""
    sim = SimPty(baud=None)
    link.symlink_to(sim.path)
    unit = asyncio.create_task(run_console_unit(sim, root, MAC))
    product = line.config.product(PRODUCT)
    assert product is not None
    spec = Fixture(name="f1", port=str(link), driver="console", product=PRODUCT,
                   device_path="config/device.json5", poll_interval=0.05)
    runner = FixtureRunner(spec, product, line.journal, unit_steps(product, line.maker, None))
    task = asyncio.create_task(runner.run_forever())
    try:
        yield runner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sim.hangup()
        await asyncio.wait_for(unit, 5)


def agent_writes(root: Path, uci: str) -> None:
    """device.json5 as the agent saves it (its own JSON5: unquoted keys, single quotes)."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "device.json5").write_text(
        f"{{\n    id: '{uci}',\n    product: '{PRODUCT}',\n    name: 'Acme Air Sensor',\n}}\n")


async def test_a_fixture_reads_the_agents_file_back_and_finds_its_uci(
        line: Line, tmp_path: Path) -> None:
    status, reply = await line.serialize(SECTION)
    assert status == 200
    agent_writes(tmp_path / "unit", reply["id"])
    async with console_fixture(line, tmp_path / "unit", tmp_path / "ttyA") as runner:
        async def checked() -> bool:
            return (await line.journal.unit(reply["id"])).last("verified") is not None

        await until(checked)
        assert runner.status.state == "done"
    unit = await line.journal.unit(reply["id"])
    assert unit.state == "labelled"  # the read-back keeps the unit's state
    assert unit.last("verified").data["algorithm"] == "agent-file-id"  # type: ignore[union-attr]


async def test_a_device_file_naming_another_uci_fails_the_unit_as_a_label_mismatch(
        line: Line, tmp_path: Path) -> None:
    status, reply = await line.serialize(SECTION)
    assert status == 200
    agent_writes(tmp_path / "unit", "0000000000000000")  # another station's, or a stale one
    async with console_fixture(line, tmp_path / "unit", tmp_path / "ttyB") as runner:
        async def failed() -> bool:
            return (await line.journal.unit(reply["id"])).state == "failed"

        await until(failed)
        assert runner.status.state == "failed"
    failure = (await line.journal.unit(reply["id"])).last("failed")
    assert failure is not None and failure.data["code"] == "label-mismatch"
    assert "names '0000000000000000'" in failure.data["reason"]
    assert "reprint" in failure.data["action"]
