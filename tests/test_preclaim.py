"""Pre-claim on the line, against the real reference registry on 127.0.0.1: the unit's key is
made on the unit (or by the station and written to it), the CSR goes through the outbox,
and the certificate comes back to be written and verified on the unit; no private key ever
reaches the journal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import json5
import pytest
from cryptography import x509

from factory import certs
from factory.config import DriverName, Fixture, StationConfig
from factory.config.drivers import ConsoleSettings
from factory.journal.interface import Journal
from factory.labels.making import LabelMaker
from factory.labels.products import ProductLabels
from factory.station import unit_steps
from factory.testbed.registry.keys import STORE
from factory.testbed.sim.console import run_console_unit
from factory.testbed.sim.framed import run_framed_unit
from factory.testbed.sim.pty import SimPty
from factory.units.driver import Identity
from factory.units.errors import PreclaimRefused, UpstreamPending
from factory.units.fixture import FixtureRunner
from factory.units.pipeline import Pipeline, UnitRun
from factory.upstream.http import HttpUpstream
from factory.upstream.outbox import OutboxWorker
from tests.conftest import OTHER_PRODUCT
from tests.test_outbox import Registry
from tests.test_pipeline import MemoryUnit

pytestmark = pytest.mark.slow
DEVICE = "config/device.json5"
ACCOUNT = "acme-retail"


@contextlib.asynccontextmanager
async def registry_up(tmp_path: Path, *, account: bool = True) -> AsyncIterator[Registry]:
    registry = Registry(tmp_path / "registry.db")
    await registry.start()
    if account:
        assert registry.server is not None
        await registry.server.app[STORE].add_token("account", ACCOUNT, "2026-11-23T00:00:00Z")
    try:
        yield registry
    finally:
        if registry.server is not None and registry.server.runner is not None:
            with contextlib.suppress(RuntimeError):
                await registry.stop()


@contextlib.asynccontextmanager
async def draining(journal: Journal, registry: Registry) -> AsyncIterator[OutboxWorker]:
    async with aiohttp.ClientSession() as session:
        worker = OutboxWorker(journal, HttpUpstream(session, registry.url, registry.token,
                                                    timeout=2), base=0.02, cap=0.1, poll=0.05)
        task = asyncio.create_task(worker.run_forever())
        try:
            yield worker
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def pipeline(config: StationConfig, journal: Journal, worker: OutboxWorker,
             wait: float = 10) -> tuple[Pipeline, UnitRun]:
    product = config.product(OTHER_PRODUCT)
    assert product is not None and product.claim == "pre"
    product = type(product)(**{**product.__dict__, "preclaim_wait": wait})
    labels = LabelMaker(config, journal, ProductLabels(config))
    steps = unit_steps(product, labels, worker)
    return Pipeline(journal, steps), UnitRun("f1", product, DEVICE)


def no_private_key_in(journal_path: Path) -> None:
    for path in journal_path.parent.glob(journal_path.name + "*"):
        assert b"PRIVATE KEY" not in path.read_bytes(), path


async def kinds(journal: Journal, uci: str) -> list[str]:
    return [e.kind for e in (await journal.unit(uci)).events]


@pytest.mark.parametrize("on_unit", [True, False], ids=["key-made-on-unit", "key-by-station"])
async def test_a_unit_is_preclaimed_and_gets_its_certificate(
        tmp_path: Path, config: StationConfig, journal: Journal, on_unit: bool) -> None:
    async with registry_up(tmp_path) as registry, draining(journal, registry) as worker:
        steps, run = pipeline(config, journal, worker)
        unit = MemoryUnit(hardware_id="02:00:00:00:05:01", keygen=on_unit)
        await steps.provision(run, unit)
        assert run.uci is not None
        async with aiohttp.ClientSession() as session, session.get(
                f"{registry.url}v1/devices/{run.uci}",
                headers={"Authorization": f"Bearer {registry.token}"}) as resp:
            upstream = await resp.json()
    assert upstream["claim"]["status"] == "claimed" and upstream["claim"]["account"] == ACCOUNT
    assert upstream["claim"]["how"] == "pre"
    key = certs.load_key(unit.files["config/device.key"])
    cert = x509.load_pem_x509_certificate(unit.files["config/device.crt"])
    assert certs.spki_sha256(cert.public_key()) == certs.spki_sha256(key.public_key())
    assert cert.subject.rfc4514_string() == f"CN={run.uci}"
    assert upstream["certificate"]["fingerprint"] == certs.fingerprint(
        unit.files["config/device.crt"].decode())
    assert b"BEGIN CERTIFICATE" in unit.files["config/ca.crt"]
    provision = json.loads(unit.files["config/provision.json5"])
    assert provision["account"] == ACCOUNT and provision["id"] == run.uci
    assert provision["certificate"] == "device.crt" and provision["key"] == "device.key"
    events = await kinds(journal, run.uci)
    assert events == ["issued", "written", "verified", "key_made", "preclaimed",
                      "certificate_written"]
    made = (await journal.unit(run.uci)).last("key_made")
    assert made is not None and made.data["origin"] == ("unit" if on_unit else "station")
    no_private_key_in(config.journal)


async def test_upstream_down_sets_the_unit_aside_and_a_replug_finishes_it(
        tmp_path: Path, config: StationConfig, journal: Journal) -> None:
    async with registry_up(tmp_path) as registry:
        await registry.stop()  # the factory network is down
        async with draining(journal, registry) as worker:
            steps, run = pipeline(config, journal, worker, wait=0.3)
            unit = MemoryUnit(hardware_id="02:00:00:00:05:02")
            with pytest.raises(UpstreamPending, match="stays queued"):
                await steps.provision(run, unit)
            assert run.uci is not None
            assert (await journal.outbox_stats()).pending == 1
            assert "config/device.crt" not in unit.files
            key = unit.files["config/device.key"]

            await registry.start()
            async with asyncio.timeout(10):
                while (await journal.outbox_stats()).pending:
                    await asyncio.sleep(0.05)
            steps, again = pipeline(config, journal, worker)
            await steps.provision(again, unit)  # plugged in again
    assert again.uci == run.uci and unit.files["config/device.key"] == key  # its own key kept
    cert = x509.load_pem_x509_certificate(unit.files["config/device.crt"])
    assert certs.spki_sha256(cert.public_key()) == again.key_id
    events = await kinds(journal, run.uci)
    assert events.count("key_made") == 1 and events.count("preclaimed") == 1
    assert events[-1] == "certificate_written"
    stats = await journal.outbox_stats()
    assert (stats.pending, stats.done, stats.failed) == (0, 1, 0)

    # Plugged in once more: the files are checked, nothing is asked or written again.
    async with registry_up(tmp_path) as registry, draining(journal, registry) as worker:
        steps, third = pipeline(config, journal, worker)
        await steps.provision(third, unit)
    assert await kinds(journal, run.uci) == events


async def test_a_refused_preclaim_sets_the_unit_aside_for_an_engineer(
        tmp_path: Path, config: StationConfig, journal: Journal) -> None:
    async with registry_up(tmp_path, account=False) as registry, \
            draining(journal, registry) as worker:
        steps, run = pipeline(config, journal, worker)
        with pytest.raises(PreclaimRefused, match="no account 'acme-retail'"):
            await steps.provision(run, MemoryUnit(hardware_id="02:00:00:00:05:03"))
    assert run.uci is not None
    unit = await journal.unit(run.uci)
    assert unit.state == "failed"
    assert [e.kind for e in unit.events][-2:] == ["preclaim_failed", "failed"]
    assert (await journal.outbox_stats()).failed == 1


@pytest.mark.parametrize("driver,keygen", [("console", True), ("console", False),
                                           ("framed", True), ("framed", False)],
                         ids=["console-openssl", "console-no-openssl", "framed-keygen",
                              "framed-no-keygen"])
async def test_real_units_on_a_fixture_are_preclaimed(
        tmp_path: Path, config: StationConfig, journal: Journal, driver: DriverName,
        keygen: bool) -> None:
    link, root = tmp_path / "unit.tty", tmp_path / "unit"
    sim = SimPty(baud=None)
    link.symlink_to(sim.path)
    mac = "02:00:00:00:06:01"
    if driver == "framed":
        served = run_framed_unit(sim, root, Identity(hardware_id=mac), keygen=keygen)
    else:
        served = run_console_unit(sim, root, mac, openssl=keygen)
    unit_task = asyncio.create_task(served)
    spec = Fixture(name="f1", port=str(link), driver=driver, product=OTHER_PRODUCT,
                   device_path=DEVICE, poll_interval=0.05,
                   console=ConsoleSettings(identify_command="cat sys/class/net/eth0/address"))
    try:
        async with registry_up(tmp_path) as registry, draining(journal, registry) as worker:
            product = config.product(OTHER_PRODUCT)
            assert product is not None
            labels = LabelMaker(config, journal, ProductLabels(config))
            runner = FixtureRunner(spec, product, journal, unit_steps(product, labels, worker))
            task = asyncio.create_task(runner.run_forever())
            try:
                async with asyncio.timeout(30):
                    while not (root / "config" / "provision.json5").exists():
                        await asyncio.sleep(0.05)
                    while runner.status.done < 1:
                        await asyncio.sleep(0.05)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        sim.hangup()
        await asyncio.wait_for(unit_task, 5)
    uci = json5.loads((root / DEVICE).read_text())["id"]
    key = root / "config" / "device.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate((root / "config" / "device.crt").read_bytes())
    assert certs.spki_sha256(cert.public_key()) == certs.spki_sha256(
        certs.load_key(key.read_bytes()).public_key())
    assert json5.loads((root / "config" / "provision.json5").read_text())["id"] == uci
    made = (await journal.unit(uci)).last("key_made")
    assert made is not None and made.data["origin"] == ("unit" if keygen else "station")
    assert (await kinds(journal, uci))[-1] == "certificate_written"
    no_private_key_in(config.journal)
