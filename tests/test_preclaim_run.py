"""`factory preclaim` batch runs, the real command against the real reference registry on
127.0.0.1: bundles that match, a report, a run killed half way and finished by running it
again, with every unit pre-claimed exactly once."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography import x509

from factory import certs
from factory.testbed.registry.keys import STORE
from tests.conftest import CONFIG_TEXT, FACTORY, OTHER_PRODUCT, PRODUCT, ROOT, run_cli, write_config
from tests.test_outbox import Registry

pytestmark = pytest.mark.slow
ACCOUNT = "acme-retail"


async def registry_with_account(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "registry.db")
    await registry.start()
    assert registry.server is not None
    await registry.server.app[STORE].add_token("account", ACCOUNT, "2026-11-23T00:00:00Z")
    return registry


def config_for(tmp_path: Path, registry: Registry) -> Path:
    token = tmp_path / "registry.token"
    token.write_text(registry.token + "\n")
    token.chmod(0o600)
    return write_config(tmp_path, CONFIG_TEXT + f"""
[upstream]
kind = "http"
url = "{registry.url}"
token_file = "registry.token"
""")


async def preclaim(config: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *FACTORY, "-c", str(config), "preclaim", "--product", OTHER_PRODUCT, "--account",
        ACCOUNT, "--no-progress", *args, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def finished(process: asyncio.subprocess.Process) -> str:
    try:
        out, err = await asyncio.wait_for(process.communicate(), 120)
    finally:
        if process.returncode is None:  # timed out or cancelled: leave nothing running
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    return out.decode()


def report(out: Path) -> list[dict[str, str]]:
    with (out / "report.csv").open(newline="") as source:
        return list(csv.DictReader(source))


def certificates_per_device(registry_db: Path) -> dict[str, int]:
    with sqlite3.connect(registry_db) as db:
        return dict(db.execute("SELECT device_id, count(*) FROM certificates GROUP BY 1"))


def journal_count(journal: Path, kind: str) -> int:
    """Events of `kind` (0 while the journal is still being made)."""
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            return int(db.execute("SELECT count(*) FROM events WHERE kind = ?", (kind,))
                       .fetchone()[0])
    except sqlite3.OperationalError:
        return 0


async def test_a_run_makes_matching_bundles_and_a_report(tmp_path: Path) -> None:
    registry = await registry_with_account(tmp_path)
    try:
        config = config_for(tmp_path, registry)
        out = tmp_path / "run"
        printed = await finished(await preclaim(config, "--count", "25", "--out", str(out)))
        assert "25 pre-claimed, 0 failed, 0 still pending, of 25 units" in printed
    finally:
        await registry.stop()
    rows = report(out)
    assert len(rows) == 25 and {r["status"] for r in rows} == {"preclaimed"}
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for row in rows:
        bundle_file, key_file = out / f"{row['uci']}.json", out / f"{row['uci']}.key"
        for path in (bundle_file, key_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        bundle = json.loads(bundle_file.read_text())
        files = bundle["files"]
        assert bundle["uci"] == row["uci"]
        assert sorted(files) == ["ca.crt", "device.crt", "device.key", "provision.json5"]
        assert files["device.key"] == key_file.read_text()
        assert json.loads(files["provision.json5"])["account"] == ACCOUNT
        key = certs.load_key(files["device.key"].encode())
        cert_pem = files["device.crt"]
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        assert certs.spki_sha256(cert.public_key()) == certs.spki_sha256(key.public_key())
        assert certs.fingerprint(cert_pem) == row["fingerprint"]
        assert cert.subject.rfc4514_string() == f"CN={row['uci']}"
    assert certificates_per_device(tmp_path / "registry.db") == {r["uci"]: 1 for r in rows}
    for path in tmp_path.glob("journal.sqlite*"):
        assert b"PRIVATE KEY" not in path.read_bytes()


async def test_a_run_killed_half_way_finishes_when_run_again(tmp_path: Path) -> None:
    registry = await registry_with_account(tmp_path)
    try:
        config = config_for(tmp_path, registry)
        out, journal = tmp_path / "run", tmp_path / "journal.sqlite"
        first = await preclaim(config, "--count", "300", "--out", str(out))
        async with asyncio.timeout(60):
            while not journal.exists() or journal_count(journal, "preclaimed") < 20:
                await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        done_at_kill = journal_count(journal, "preclaimed")
        assert 0 < done_at_kill < 300  # killed half way, not after the end
        printed = await finished(await preclaim(config, "--out", str(out)))
        assert "300 pre-claimed, 0 failed, 0 still pending, of 300 units" in printed
        assert "0 keys made," in printed  # every key was made before the kill
        again = await finished(await preclaim(config, "--out", str(out)))
        assert "300 pre-claimed" in again and "0 keys made, 0 reused" in again
    finally:
        await registry.stop()
    rows = report(out)
    assert len({r["uci"] for r in rows}) == 300
    per_device = certificates_per_device(tmp_path / "registry.db")
    assert per_device == {r["uci"]: 1 for r in rows}  # one certificate per unit, none twice
    assert journal_count(journal, "preclaimed") == 300
    assert journal_count(journal, "issued") == 300  # resuming issued nothing new
    assert "chain intact" in run_cli(config, "journal", "verify").stdout


async def test_issued_units_from_a_csv_and_what_is_refused(tmp_path: Path) -> None:
    registry = await registry_with_account(tmp_path)
    try:
        config = config_for(tmp_path, registry)
        issued = run_cli(config, "issue", "--product", OTHER_PRODUCT, "--count", "3",
                         "--json").stdout
        ucis = json.loads(issued)["ucis"]
        listing = tmp_path / "units.csv"
        listing.write_text("uci,note\n" + "".join(f"{u.lower()},x\n" for u in ucis))
        printed = await finished(await preclaim(config, "--from", str(listing), "--out",
                                                str(tmp_path / "run")))
        assert "3 pre-claimed" in printed
        assert sorted(r["uci"] for r in report(tmp_path / "run")) == sorted(ucis)

        other = run_cli(config, "issue", "--product", PRODUCT, "--json").stdout
        listing.write_text("uci\n" + json.loads(other)["ucis"][0] + "\n")
        wrong = await preclaim(config, "--from", str(listing), "--out", str(tmp_path / "r2"))
        _, err = await wrong.communicate()
        assert wrong.returncode == 2 and b"not " + OTHER_PRODUCT.encode() in err
        listing.write_text("serial\nX\n")
        bad = await preclaim(config, "--from", str(listing), "--out", str(tmp_path / "r3"))
        _, err = await bad.communicate()
        assert bad.returncode == 2 and b"'uci'" in err
    finally:
        await registry.stop()
