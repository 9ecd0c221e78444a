"""The files the station and the registry make hold secrets (tokens' hashes, claim keys,
private keys, claim IDs on labels): each is made private by the code itself, so these tests
run with umask 000, where a file left to the umask would come out world-readable."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory import claim_secret
from factory import uci as uci_codec
from factory.journal import open_journal
from factory.testbed.registry.ca import CertificateAuthority
from factory.testbed.registry.store import Store
from tests.conftest import CONFIG_TEXT, PRODUCT, ROOT, run_cli, write_config
from tests.test_preclaim_run import config_for, finished, preclaim, registry_with_account


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """umask 000 for this process and the commands it runs (restored after)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(*paths: Path) -> dict[str, str]:
    return {p.name: oct(mode(p)) for p in paths}


def station_config(folder: Path) -> Path:
    text = CONFIG_TEXT.replace('journal = "journal.sqlite"', 'journal = "state/journal.sqlite"'
                               f'\nlabels = "{ROOT / "labels"}"')
    text = text.replace('model = "AQ-100"', 'model = "AQ-100"\nlabel = "thermal-50x30-secret"'
                        '\nclaim_secret_days = 30')
    return write_config(folder, text + '\n[printer]\nqueue = "none"\nkeep = "kept-labels"\n')


async def test_the_stations_files_are_private(tmp_path: Path, umask_zero: None) -> None:
    config = station_config(tmp_path)
    state = tmp_path / "state"
    run_cli(config, "token", "new", "--role", "operator", "--name", "files")  # makes the journal
    uci = uci_codec.parse(run_cli(config, "issue", "--product", PRODUCT).stdout.split()[0])
    run_cli(config, "label", "reprint", uci, "--reason", "smudged")  # kept PDF, claim key
    (tmp_path / "out").mkdir(mode=0o755)
    run_cli(config, "label", "render", uci, "-o", str(tmp_path / "out" / "render.pdf"))
    run_cli(config, "label", "sheet", "--product", PRODUCT, "--count", "2", "-o",
            str(tmp_path / "out" / "sheet.pdf"))
    run_cli(config, "journal", "export", "-o", str(tmp_path / "out" / "audit.jsonl"))
    kept = tmp_path / "kept-labels"
    pdfs = sorted(kept.glob("*.pdf"))
    assert [p.name for p in pdfs] == [f"{uci}-1.pdf"]

    files = [state / "journal.sqlite", claim_secret.key_path(state / "journal.sqlite"), *pdfs,
             state / "journal.sqlite.anchor", *state.glob("journal.sqlite.lock"),
             *sorted((tmp_path / "out").iterdir())]
    assert modes(*files) == {p.name: "0o600" for p in files}
    assert modes(state, kept) == {"state": "0o700", "kept-labels": "0o700"}
    assert not [p for p in [*state.iterdir(), *kept.iterdir()] if p not in files], \
        "a file nobody checked"

    # SQLite gives the -wal and -shm files the journal's own mode, whatever the umask.
    journal = await open_journal(state / "journal.sqlite", "test-station")
    try:
        await journal.add_token("files-2", "viewer", "0" * 64)
        live = [state / "journal.sqlite-wal", state / "journal.sqlite-shm"]
        assert modes(*live) == {p.name: "0o600" for p in live}
    finally:
        await journal.close()


async def test_the_registrys_files_are_private(tmp_path: Path, umask_zero: None) -> None:
    db = tmp_path / "registry.sqlite"
    store = await Store.open(db)
    try:
        await store.add_token("product", "line-1", "2026-11-23T00:00:00Z")
        ca = await asyncio.to_thread(CertificateAuthority.open, tmp_path / "ca-key.pem",
                                     tmp_path / "ca.pem")
        assert ca.cert_pem
        live = [db, tmp_path / "registry.sqlite-wal", tmp_path / "registry.sqlite-shm",
                tmp_path / "ca-key.pem"]
        assert modes(*live) == {p.name: "0o600" for p in live}
        # The CA certificate is public, but nobody else may replace it.
        assert mode(tmp_path / "ca.pem") == 0o644
    finally:
        await store.close()


async def test_a_batch_runs_keys_are_private(tmp_path: Path, umask_zero: None) -> None:
    registry = await registry_with_account(tmp_path)
    try:
        config = config_for(tmp_path, registry)
        out = tmp_path / "batch"
        await finished(await preclaim(config, "--count", "3", "--out", str(out)))
    finally:
        await registry.stop()
    files = sorted(out.iterdir())
    assert len([p for p in files if p.suffix == ".key"]) == 3
    assert modes(*files) == {p.name: "0o600" for p in files}
    assert mode(out) == 0o700
