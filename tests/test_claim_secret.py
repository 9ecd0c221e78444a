"""Claim secrets for user-claimed products: printed on the label, sent upstream only as a
salted hash, and what the reference registry checks a buyer's claim against."""

from __future__ import annotations

import subprocess
from pathlib import Path

import aiohttp
import pytest

from factory import claim_secret
from factory import uci as uci_codec
from factory.claim_secret import ClaimSecrets
from factory.config import ConfigError, load
from factory.journal import open_journal
from factory.labels.errors import TemplateError
from factory.labels.making import Label, LabelMaker
from factory.labels.products import ProductLabels
from factory.station import registration
from factory.testbed.registry.keys import STORE
from factory.units.pipeline import Identify, Issue, Pipeline, Step, UnitRun, Verify, Write
from factory.upstream.http import HttpUpstream
from factory.upstream.outbox import OutboxWorker
from tests.conftest import PRODUCT, ROOT, run_cli
from tests.test_labels_station import station_config
from tests.test_outbox import Registry
from tests.test_pipeline import MemoryUnit

pytestmark = pytest.mark.slow


def secret_config(folder: Path, template: str = "thermal-50x30-secret") -> Path:
    path = station_config(folder)
    path.write_text(path.read_text().replace(
        'label = "thermal-50x30"', f'label = "{template}"\nclaim_secret_days = 30'))
    return path


def test_a_secret_is_stable_per_unit_and_the_key_file_private(tmp_path: Path) -> None:
    key = claim_secret.key_path(tmp_path / "journal.sqlite")
    secrets = ClaimSecrets.open(key)
    assert key.stat().st_mode & 0o777 == 0o600
    one, other = secrets.secret("7KQ2M9XD3FHT0W5R"), secrets.secret("7KQ2M9XD3FHT0W5S")
    assert len(one) == 19 and one.count("-") == 3 and one != other
    assert ClaimSecrets.open(key).secret("7KQ2M9XD3FHT0W5R") == one  # reprints match
    assert secrets.secret_hash("7KQ2M9XD3FHT0W5R") == secrets.secret_hash("7KQ2M9XD3FHT0W5R")
    assert one.replace("-", "") not in secrets.secret_hash("7KQ2M9XD3FHT0W5R")
    assert ClaimSecrets(b"\x01" * 32).secret("7KQ2M9XD3FHT0W5R") != one  # per station key


def test_a_template_without_the_secret_is_refused_at_start(tmp_path: Path) -> None:
    config = load(secret_config(tmp_path, "thermal-50x30"))
    with pytest.raises(TemplateError, match=r"never prints \{claim_secret\}"):
        ProductLabels(config).check()
    failed = run_cli(None, "config", "check", str(secret_config(tmp_path, "thermal-50x30")),
                     check=False)
    assert failed.returncode == 2 and "claim_secret" in failed.stderr
    with pytest.raises(ConfigError, match="claim_secret_days"):
        path = secret_config(tmp_path)
        path.write_text(path.read_text().replace("claim_secret_days = 30",
                                                 "claim_secret_days = 99999"))
        load(path)


async def test_the_label_shows_the_secret_and_only_its_owner_claims_the_unit(
        tmp_path: Path) -> None:
    config = load(secret_config(tmp_path))
    secrets = ClaimSecrets.open(claim_secret.key_path(config.journal))
    journal = await open_journal(config.journal, config.station_id)
    registry = Registry(tmp_path / "registry.db")
    await registry.start()
    try:
        products = ProductLabels(config, secrets)
        products.check()
        labels = LabelMaker(config, journal, products)
        product = config.product(PRODUCT)
        assert product is not None
        steps: list[Step] = [Identify(), Issue(), Write(), Verify(registration), Label(labels)]
        run = await Pipeline(journal, steps).provision(
            UnitRun("f1", product, "config/device.json5"), MemoryUnit())
        assert run.uci is not None
        secret = secrets.secret(run.uci)
        pdf = config.printer.keep / f"{run.uci}-1.pdf"
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                              check=True).stdout
        assert secret in text and "Claim secret" in text

        async with aiohttp.ClientSession() as session:
            worker = OutboxWorker(journal, HttpUpstream(session, registry.url, registry.token),
                                  secrets=secrets)
            assert await worker.drain_once() == 1
            assert (await journal.unit(run.uci)).last("registered") is not None
            store = registry.server.app[STORE]  # type: ignore[union-attr]
            buyer = await store.add_token("account", "buyer", "2026-11-23T00:00:00Z")
            thief = await store.add_token("account", "thief", "2026-11-23T00:00:00Z")

            async def claim(token: str, body: dict[str, str]) -> int:
                async with session.post(f"{registry.url}v1/claims", json=body, headers={
                        "Authorization": f"Bearer {token}"}) as resp:
                    return resp.status

            assert await claim(thief, {"id": run.uci}) == 403  # the UCI alone is not enough
            assert await claim(thief, {"id": run.uci, "secret": "AAAA-AAAA-AAAA-AAAA"}) == 403
            # As a buyer types it off the label: lower case, spaces for hyphens.
            assert await claim(buyer, {"id": run.uci,
                                       "secret": secret.lower().replace("-", " ")}) == 200
            assert await claim(thief, {"id": run.uci, "secret": secret}) == 409
    finally:
        await registry.stop()
        await journal.close()
    for path in config.journal.parent.glob(config.journal.name + "*"):
        data = path.read_bytes()
        assert secret.encode() not in data and secret.replace("-", "").encode() not in data
    assert ROOT.joinpath("labels", "thermal-50x30-secret.toml").exists()


def test_a_reprint_shows_the_same_secret(tmp_path: Path) -> None:
    """`factory label reprint` once refused these labels: it had no claim key."""
    config = secret_config(tmp_path)
    uci = uci_codec.parse(run_cli(config, "issue", "--product", PRODUCT).stdout.split()[0])
    reprinted = run_cli(config, "label", "reprint", uci, "--reason", "smudged").stdout
    pdf = Path(reprinted.split("; ")[1])
    secret = ClaimSecrets.open(claim_secret.key_path(load(config).journal)).secret(uci)
    shown = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                           check=True, timeout=30).stdout
    assert secret in shown
