"""RainMaker products on esptool units: the pipeline with the `claiming` step against the
simulated claiming service (real HTTP) and the simulated ESP ROM bootloader (a real pty); what
lands in flash.bin is parsed back and the certificate checked against the key written."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from factory import certs
from factory.config import Product
from factory.journal.interface import Journal
from factory.testbed.sim.pty import SimPty
from factory.units import esp_nvs
from factory.units.esp import EsptoolDriver
from factory.units.pipeline import Identify, Issue, Pipeline, UnitRun, Verify, Write
from factory.upstream.rainmaker import RainmakerUpstream
from factory.upstream.rainmaker_claim import ClaimingPending, ClaimNode, ClaimRefused

from .rainmaker_cloud import EMAIL, Cloud, rainmaker_cloud
from .test_esp_unit import AIR, SIM, esp_unit, partition

MAKER = dataclasses.replace(AIR, claim="pre", account=EMAIL, preclaim_wait=5.0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


async def provision(journal: Journal, sim: SimPty, cloud: Cloud,
                    session: aiohttp.ClientSession, product: Product = MAKER) -> UnitRun:
    claim = ClaimNode(RainmakerUpstream(session, cloud.url, cloud.token, timeout=5),
                      base=0.01, cap=0.05)
    driver = EsptoolDriver(sim.path, 115200, SIM)
    assert await driver.present()
    run = UnitRun("f1", product, "unused")
    steps = (Identify(), Issue(), claim, Write(), Verify())
    return await Pipeline(journal, steps).provision(run, driver)


async def test_a_unit_is_claimed_and_its_credentials_land_in_flash(tmp_path, journal,
                                                                   session):
    root = tmp_path / "unit"
    async with rainmaker_cloud(tmp_path / "cloud") as cloud, esp_unit(root) as sim:
        run = await provision(journal, sim, cloud, session)
        node_id = (await cloud.nodes())["7CDFA100033B"]
    held = esp_nvs.read_image(partition(root))
    assert held["fctry"]["uci"] == run.uci  # the factory namespace beside RainMaker's
    creds = held["rmaker_creds"]
    assert list(creds) == ["node_id", "mqtt_host", "client_cert", "client_key", "random"]
    assert creds["node_id"] == node_id.encode()
    assert isinstance(creds["client_cert"], bytes) and isinstance(creds["client_key"], bytes)
    cert = x509.load_pem_x509_certificate(creds["client_cert"])
    key = certs.load_key(creds["client_key"])
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert certs.certificate_key_id(creds["client_cert"].decode()) == \
        certs.spki_sha256(key.public_key())  # the certificate certifies the key written
    ca = x509.load_pem_x509_certificate((cloud.db.parent / "rainmaker.db.ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert creds["mqtt_host"] == b"a1sim2rainmaker3-ats.iot.us-east-1.amazonaws.com"
    assert isinstance(creds["random"], bytes) and len(creds["random"]) == 64
    unit = await journal.unit(run.uci or "")
    assigned, granted = unit.last("node_assigned"), unit.last("preclaimed")
    assert assigned is not None and assigned.data == {
        "node_id": node_id, "mac": "7CDFA100033B", "platform": "esp32c3"}
    assert granted is not None and granted.data["node_id"] == node_id
    assert granted.data["spki_sha256"] == certs.spki_sha256(key.public_key())
    assert "PRIVATE KEY" not in json.dumps([e.data for e in unit.events])


async def test_a_replugged_unit_keeps_its_node_id_and_is_only_rechecked(tmp_path, sqlite_journal,
                                                                        session):
    journal = sqlite_journal  # the journal side is the first test's, on both backends
    root = tmp_path / "unit"
    async with rainmaker_cloud(tmp_path / "cloud") as cloud:
        async with esp_unit(root) as sim:
            first = await provision(journal, sim, cloud, session)
        flashed = partition(root)
        cloud.faults.unavailable = 1000  # a re-plug must not need the service at all
        async with esp_unit(root) as sim:
            again = await provision(journal, sim, cloud, session)
    assert again.uci == first.uci and again.already_done
    assert partition(root) == flashed
    kinds = [e.kind for e in (await journal.unit(first.uci or "")).events]
    assert kinds.count("node_assigned") == kinds.count("preclaimed") == 1
    assert kinds.count("written") == kinds.count("verified") == 1


async def test_quota_exhausted_fails_the_unit_before_anything_is_written(tmp_path, sqlite_journal,
                                                                         session):
    journal = sqlite_journal
    root = tmp_path / "unit"
    async with rainmaker_cloud(tmp_path / "cloud", quota=0) as cloud, esp_unit(root) as sim:
        with pytest.raises(ClaimRefused, match="User does not have available quota"):
            await provision(journal, sim, cloud, session)
    assert partition(root) == b"\xff" * MAKER.nvs.size
    units, _ = await journal.units()
    failed = (await journal.unit(units[0].uci)).last("failed")
    assert failed is not None and failed.data["step"] == "claiming"
    assert "esp-rainmaker-admin@espressif.com" in failed.data["reason"]
    assert failed.data["action"] == ClaimRefused.action


async def test_a_claiming_service_down_is_waited_for_then_the_unit_is_put_aside(
        tmp_path, sqlite_journal, session):
    journal = sqlite_journal
    root = tmp_path / "unit"
    async with rainmaker_cloud(tmp_path / "cloud") as cloud:
        cloud.faults.unavailable = 1000
        async with esp_unit(root) as sim:
            with pytest.raises(ClaimingPending, match="503") as caught:
                await provision(journal, sim, cloud, session,
                                dataclasses.replace(MAKER, preclaim_wait=0.3))
        assert "asked" in caught.value.reason
        assert partition(root) == b"\xff" * MAKER.nvs.size
        cloud.faults.unavailable, cloud.faults.throttle = 2, 2  # down a little while: retried
        async with esp_unit(root) as sim:
            run = await provision(journal, sim, cloud, session)
    assert esp_nvs.read_image(partition(root))["rmaker_creds"]["node_id"] == \
        (await cloud.nodes())["7CDFA100033B"].encode()
    assert run.uci is not None
