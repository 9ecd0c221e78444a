"""Pre-claimed ESP32 units: the simulated chip (the ROM bootloader of `factory sim-unit
--driver esptool`, on a real pty) through the real pipeline and the reference registry on
127.0.0.1, and once through real processes (`factory serve`, `sim-unit`, `registry serve`).
The station makes the key; the certificate files go into the product's cert_namespace of
the NVS partition beside the factory data; what landed in flash.bin is read back as NVS.
The journal is a SQLite file, so it is searched for a private key."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from cryptography import x509

from factory import certs
from factory.config import Product, StationConfig
from factory.config.nvs import NvsLayout
from factory.journal.interface import Journal
from factory.labels.making import LabelMaker
from factory.labels.products import ProductLabels
from factory.station import unit_steps
from factory.testbed.sim.esp import EspFaults
from factory.units import esp_nvs
from factory.units.errors import NotInBootloader, UnitRefused, VerifyMismatch
from factory.units.esp import EsptoolDriver
from factory.units.pipeline import DEFAULT_STEPS, Pipeline, UnitRun
from factory.upstream.outbox import OutboxWorker
from tests.conftest import OTHER_PRODUCT, PRODUCT, ROOT
from tests.processes import registry_process, station_process, until
from tests.test_esp_station import MACS, esp_config, esp_sim
from tests.test_esp_unit import SIM, esp_unit
from tests.test_faults_upstream import journal_rows
from tests.test_preclaim import ACCOUNT, draining, kinds, no_private_key_in, registry_up

pytestmark = pytest.mark.slow
LAYOUT = NvsLayout(offset=0x9000, size=0x3000, namespace="fctry", cert_namespace="hub_cert")
FILES = {"device_key", "device_crt", "ca_crt", "provision"}
FAST = dataclasses.replace(SIM, flash_baud=921600)  # four rewrites of the partition per unit


def hub(config: StationConfig) -> Product:
    product = config.product(OTHER_PRODUCT)
    assert product is not None and product.claim == "pre"
    return dataclasses.replace(product, nvs=LAYOUT, preclaim_wait=10)


async def provision(root: Path, config: StationConfig, journal: Journal,
                    worker: OutboxWorker) -> UnitRun:
    """One unit plugged in on a fixture of the pre-claimed product, as the station does it."""
    product = hub(config)
    steps = unit_steps(product, LabelMaker(config, journal, ProductLabels(config)), worker)
    async with esp_unit(root) as sim:
        driver = EsptoolDriver(sim.path, 115200, FAST)
        assert await driver.present()
        return await Pipeline(journal, steps).provision(UnitRun("f1", product, ""), driver)


def partition(root: Path) -> bytes:
    flash = (root / "flash.bin").read_bytes()
    return flash[LAYOUT.offset:LAYOUT.offset + LAYOUT.size]


async def test_an_esp32_unit_is_preclaimed_into_its_nvs_and_rechecked_when_replugged(
        tmp_path: Path, config: StationConfig, sqlite_journal: Journal) -> None:
    root, journal = tmp_path / "unit", sqlite_journal
    async with registry_up(tmp_path) as registry, draining(journal, registry) as worker:
        run = await provision(root, config, journal, worker)
        assert run.uci is not None
        held = esp_nvs.read_image(partition(root))
        assert held["fctry"] == {"uci": run.uci, "product": OTHER_PRODUCT}  # as Write made it
        files = held["hub_cert"]
        assert set(files) == FILES and set(held) == {"fctry", "hub_cert"}
        key = certs.load_key(files["device_key"])  # type: ignore[arg-type]
        cert = x509.load_pem_x509_certificate(files["device_crt"])  # type: ignore[arg-type]
        assert certs.spki_sha256(cert.public_key()) == certs.spki_sha256(key.public_key())
        assert cert.subject.rfc4514_string() == f"CN={run.uci}"
        assert b"BEGIN CERTIFICATE" in files["ca_crt"]  # type: ignore[operator]
        provision_json = json.loads(files["provision"])  # type: ignore[arg-type]
        assert provision_json["id"] == run.uci and provision_json["account"] == ACCOUNT
        unit = await journal.unit(run.uci)
        made = unit.last("key_made")
        assert made is not None and made.data["origin"] == "station"
        assert made.data["spki_sha256"] == certs.spki_sha256(key.public_key())
        assert "PRIVATE KEY" not in json.dumps([e.data for e in unit.events])
        events = await kinds(journal, run.uci)
        assert events[:4] == ["issued", "written", "verified", "key_made"]
        assert events[-1] == "certificate_written"

        # Plugged in again: every file re-verified from the unit's partition, none written.
        before, written = partition(root), (root / "flash.bin").stat().st_mtime_ns
        again = await provision(root, config, journal, worker)
        assert again.uci == run.uci and again.already_done
        assert "certificate still verifies on the unit" in again.log
        assert partition(root) == before
        assert (root / "flash.bin").stat().st_mtime_ns == written  # nothing flashed
        assert await kinds(journal, run.uci) == events

    async with esp_unit(root) as sim:  # the files read back as the entries
        driver = EsptoolDriver(sim.path, 115200, SIM)
        assert await driver.present()
        driver.render(hub(config), run.uci)
        assert await driver.read_file("device.crt") == files["device_crt"]
        assert await driver.read_file("provision.json5") == files["provision"]
        with pytest.raises(UnitRefused, match="keep no files"):
            await driver.read_file("config/device.json5")
    no_private_key_in(config.journal)


async def test_a_damaged_certificate_entry_is_written_again_and_the_key_kept(
        tmp_path: Path, config: StationConfig, sqlite_journal: Journal) -> None:
    root, journal = tmp_path / "unit", sqlite_journal
    async with registry_up(tmp_path) as registry, draining(journal, registry) as worker:
        run = await provision(root, config, journal, worker)
        assert run.uci is not None
        good = esp_nvs.read_image(partition(root))["hub_cert"]
        # A byte of the certificate's PEM body in flash.bin flipped (the first BEGIN
        # CERTIFICATE is device_crt's: the entries go key, certificate, CA chain).
        flash = bytearray((root / "flash.bin").read_bytes())
        at = flash.index(b"-----BEGIN CERTIFICATE-----", LAYOUT.offset) + 40
        flash[at] = ord("A") if flash[at] != ord("A") else ord("B")
        (root / "flash.bin").write_bytes(bytes(flash))
        assert esp_nvs.read_image(partition(root))["hub_cert"]["device_crt"] != \
            good["device_crt"]

        again = await provision(root, config, journal, worker)
    assert again.uci == run.uci
    assert "certificate files lost on the unit: writing them again" in again.log
    held = esp_nvs.read_image(partition(root))
    assert held["hub_cert"] == good  # the certificate as granted; the key the same
    assert held["fctry"] == {"uci": run.uci, "product": OTHER_PRODUCT}
    events = await kinds(journal, run.uci)
    assert events.count("certificate_written") == 2 and events.count("key_made") == 1
    no_private_key_in(config.journal)


async def test_a_fresh_write_is_verified_in_full_though_certificates_may_follow(
        tmp_path: Path, config: StationConfig, sqlite_journal: Journal) -> None:
    """A re-plugged certified unit's partition differs from the factory image by its
    certificate entries; a unit written just now is held to the image's MD5."""
    async with esp_unit(tmp_path / "unit", EspFaults(wrong_md5=True)) as sim:
        driver = EsptoolDriver(sim.path, 115200, SIM)
        assert await driver.present()
        with pytest.raises(VerifyMismatch, match="the chip's MD5"):
            await Pipeline(sqlite_journal, DEFAULT_STEPS).provision(
                UnitRun("f1", hub(config), ""), driver)


async def test_without_a_certificate_step_the_unit_is_reset_on_release(
        tmp_path: Path, config: StationConfig, sqlite_journal: Journal) -> None:
    """`factory provision` runs no certificate step: it releases the unit, which is reset
    into its application as configured (here the ROM told to run it: it no longer syncs)."""
    settings = dataclasses.replace(SIM, after="soft-reset")
    async with esp_unit(tmp_path / "unit") as sim:
        driver = EsptoolDriver(sim.path, 115200, settings)
        assert await driver.present()
        await Pipeline(sqlite_journal, DEFAULT_STEPS).provision(
            UnitRun("f1", hub(config), ""), driver)
        await driver.release()
        after = EsptoolDriver(sim.path, 115200, SIM)
        assert not await after.present()
        assert isinstance(after.silence, NotInBootloader)


async def test_a_station_preclaims_an_esp32_unit_end_to_end(tmp_path: Path) -> None:
    """`factory serve` with an esptool fixture of the pre-claimed product, the chip and the
    reference registry each a process of their own."""
    journal, root, link = tmp_path / "journal.sqlite", tmp_path / "unit", tmp_path / "esp.tty"
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(registry_process(tmp_path))
        (tmp_path / "registry.token").write_text(registry.token)
        subprocess.run([sys.executable, "-m", "factory.cli", "registry", "token", "--db",
                        str(registry.db), "--kind", "account", "--name", ACCOUNT],
                       check=True, capture_output=True, env={**os.environ,
                                                             "PYTHONPATH": str(ROOT)})
        config = esp_config(tmp_path, registry.url, (link,))
        config.write_text(config.read_text().replace(
            f'account = "{ACCOUNT}"\n', f'account = "{ACCOUNT}"\n\n[products.nvs]\n'
            f'offset = {LAYOUT.offset:#x}\nsize = {LAYOUT.size:#x}\n'
            f'cert_namespace = "{LAYOUT.cert_namespace}"\n', 1).replace(
            f'product = "{PRODUCT}"', f'product = "{OTHER_PRODUCT}"'))
        await stack.enter_async_context(esp_sim(root, link, MACS[0]))
        await stack.enter_async_context(station_process(config))

        def certified() -> bool:
            failures = journal_rows(journal, "SELECT kind, data FROM events WHERE kind IN "
                                             "('failed', 'fixture_failed')")
            assert not failures, failures
            return bool(journal_rows(journal, "SELECT 1 FROM events WHERE kind = "
                                              "'certificate_written'"))

        await until(certified, 60, "the unit's certificate written")
    held = esp_nvs.read_image(partition(root))
    uci = str(held["fctry"]["uci"])
    files = held["hub_cert"]
    assert set(files) == FILES
    key = certs.load_key(files["device_key"])  # type: ignore[arg-type]
    cert = x509.load_pem_x509_certificate(files["device_crt"])  # type: ignore[arg-type]
    assert certs.spki_sha256(cert.public_key()) == certs.spki_sha256(key.public_key())
    assert cert.subject.rfc4514_string() == f"CN={uci}"
    (made,) = journal_rows(journal, "SELECT data FROM events WHERE kind = 'key_made'")
    assert json.loads(made[0])["origin"] == "station"
    no_private_key_in(journal)
