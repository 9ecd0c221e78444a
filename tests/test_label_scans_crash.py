"""A station killed (SIGKILL, at a failpoint) between a label's scan and its binding leaves
the binding journaled once or not at all; the restarted station finishes the unit, asking
for the scan again only if the binding was not journaled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from factory.config import load
from factory.journal import open_journal
from factory.journal.records import IssueRequest
from factory.tokens import new_token, token_hash
from tests.conftest import CONFIG_TEXT, PRODUCT, run_cli, write_config
from tests.processes import station_process
from tests.test_fixtures import plugged, read_device

pytestmark = pytest.mark.slow
MAC = "02:00:00:00:06:01"


async def prepare(tmp_path: Path) -> tuple[Path, str, list[str]]:
    path = write_config(tmp_path, CONFIG_TEXT + f"""
[[fixtures]]
name = "f1"
port = "f1.tty"
driver = "framed"
product = "{PRODUCT}"
poll_interval = 0.05
bind = "scan"
""")
    config = load(path)
    journal = await open_journal(config.journal, config.station_id)
    try:
        token = new_token()
        await journal.add_token("op", "operator", token_hash(token))
        ucis = (await journal.issue(IssueRequest(product=PRODUCT, actor="sheet",
                                                 count=2))).ucis
        for uci in ucis:
            await journal.record(uci, "labelled", "sheet", {"sheet": "s.pdf"},
                                 state="labelled")
    finally:
        await journal.close()
    return path, token, ucis


async def scan(base: str, token: str, code: str) -> dict[str, object] | None:
    """POST the scan once the fixture waits for one; None if the station died meanwhile."""
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(20):
            while True:
                try:
                    async with session.post(f"{base}/api/v1/fixtures/f1/scan",
                                            json={"code": code},
                                            headers={"Authorization": f"Bearer {token}"}) as r:
                        if r.status != 409:  # 409: not waiting yet
                            assert r.status == 200, await r.text()
                            return dict(await r.json())
                except aiohttp.ClientError:
                    return None
                await asyncio.sleep(0.05)


def events(config: Path, uci: str) -> list[str]:
    shown = json.loads(run_cli(config, "unit", uci, "--json").stdout)
    return [e["kind"] for e in shown["events"]]


@pytest.mark.parametrize(("point", "bound"), [("scan.accepted", False), ("step.writing", True)])
async def test_killed_between_scan_and_bind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            point: str, bound: bool) -> None:
    config, token, labels = await prepare(tmp_path)
    async with plugged(tmp_path / "f1.tty", tmp_path / "unit", MAC):
        monkeypatch.setenv("FACTORY_FAILPOINTS", point)
        async with station_process(config) as (proc, base):
            await scan(base, token, labels[0])
            async with asyncio.timeout(20):
                assert await proc.wait() == -9  # killed at the failpoint
        assert events(config, labels[0]).count("bound") == (1 if bound else 0)

        monkeypatch.delenv("FACTORY_FAILPOINTS")
        async with station_process(config) as (proc, base):
            if not bound:  # not journaled: the operator is asked for the scan again
                answer = await scan(base, token, labels[0])
                assert answer is not None and answer["accepted"] is True
            async with asyncio.timeout(20):
                while "verified" not in events(config, labels[0]):
                    await asyncio.sleep(0.1)
        assert read_device(tmp_path / "unit")["id"] == labels[0]
    kinds = events(config, labels[0])
    assert kinds.count("bound") == 1 and kinds[-1] == "verified"
    assert "bound" not in events(config, labels[1])
