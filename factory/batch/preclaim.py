"""Batch pre-claim runs (`factory preclaim`): certificates for many units at once, before the
units are made or after they were issued, as bundles to write to them later.

A run lives in its output folder, so running the same command again after a crash finishes
what was left and reuses what was done (like RainMaker's claim-data cache):
- `run.json` is written before anything else; a `--count` run's UCIs are issued under
  idempotency keys named after the run, so issuing again returns the very same UCIs;
- each unit's key is made once, in `DIR/<UCI>.key` (0600, synced before its CSR is
  journaled); a resumed unit's CSR is made again from that key;
- requests go through the journal's outbox like the line's (`key_made` queues a pre-claim
  keyed by unit and key, so a request is never queued twice), and the answers are journaled
  as `preclaimed` before each unit's bundle, `DIR/<UCI>.json` (0600: the files to write to
  the unit, key included, by name), is written from the journal.
Files lie flat in DIR: on ext4 a file made in a folder of its own costs about eight times
one made beside the others, and a run makes tens of thousands.
Keys and CSRs are made in parallel on all cores; requests run `concurrency` at a time.
"""

from __future__ import annotations

import asyncio
import csv
import ctypes
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from tqdm import tqdm

from factory import certs
from factory import uci as uci_codec
from factory.config import Product
from factory.files import FOLDER_MODE, private_folder, replacing, write_in_place, write_private
from factory.issuing import MAX_BATCH
from factory.journal.interface import Journal
from factory.journal.records import IssueRequest, Unit
from factory.states import EventKind
from factory.units.certificate import KEY_FILE, certificate_files
from factory.upstream.outbox import OutboxWorker
from factory.upstream.requests import PreclaimRequest, RegisterRequest

RUN_FILE = "run.json"
REPORT_FILE = "report.csv"
REPORT_FIELDS = ("uci", "human", "status", "fingerprint", "not_after", "reason")
_KINDS: tuple[EventKind, ...] = ("key_made", "preclaimed", "preclaim_failed")  # a run's steps
KEY_CHUNK = 100  # units per task of the key-making processes
_LIBC = ctypes.CDLL(None, use_errno=True)


class RunError(Exception):
    """A run that cannot go on as asked (its folder belongs to another run, a UCI is not
    the product's, ...): a message for the engineer."""


@dataclass
class RunResult:
    preclaimed: int = 0
    failed: int = 0
    pending: int = 0
    keys_made: int = 0
    keys_reused: int = 0
    elapsed: float = 0.0
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.preclaimed + self.failed + self.pending


@dataclass(frozen=True)
class KeyOutcome:
    """What a key-making process says of one unit (never the key itself)."""

    uci: str
    csr_pem: str
    spki_sha256: str
    made: bool  # False: the bundle already held a key, reused


def make_keys(folder: str, ucis: list[str], key_type: certs.KeyType) -> list[KeyOutcome]:
    """In a worker process: each unit's key (made, or the one its bundle holds) and CSR.
    New keys are synced to disk all at once by `sync_files` before any CSR is journaled."""
    out = []
    for uci in ucis:
        path = key_path(Path(folder), uci)
        try:
            key = certs.load_key(path.read_bytes())
            made = certs.csr_for(key, uci)
            fresh = False
        except (FileNotFoundError, certs.CertError):  # none, or cut short by a crash before
            made = certs.key_and_csr(uci, key_type)  # it was synced (so never journaled)
            write_in_place(path, made.key_pem)
            fresh = True
        out.append(KeyOutcome(uci, made.csr_pem, made.spki_sha256, fresh))
    return out


def sync_files(folder: Path) -> None:
    """Everything written under `folder` (files, renames, new folders) durable at once:
    syncfs(2) on its file system, one call instead of an fsync per file."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _LIBC.syncfs(fd) != 0:
            raise OSError(ctypes.get_errno(), f"syncfs {folder} failed")
    finally:
        os.close(fd)


class PreclaimRun:
    """One batch run over `out`: which units, their keys, the requests, the bundles."""

    def __init__(self, journal: Journal, product: Product, account: str, out: Path, *,
                 actor: str, key_type: certs.KeyType = "ec-p256", jobs: int | None = None,
                 progress: bool = True) -> None:
        self._journal, self._product, self._account = journal, product, account
        self._out, self._actor, self._key_type = out, actor, key_type
        self._jobs = jobs or os.cpu_count() or 1
        self._progress = progress

    # -- which units -------------------------------------------------------------------------

    async def units(self, count: int | None = None, listed: list[str] | None = None
                    ) -> list[str]:
        """The run's UCIs: as recorded in run.json when resuming, else issued now (`count`)
        or taken from `listed` (already issued, of this product)."""
        private_folder(self._out)
        os.chmod(self._out, FOLDER_MODE)  # also when the folder was there
        run_file = self._out / RUN_FILE
        if run_file.exists():
            state = json.loads(run_file.read_text())
            if (state["product"], state["account"]) != (self._product.id, self._account):
                raise RunError(f"{self._out} holds a run for product {state['product']} and "
                               f"account {state['account']}; use another --out folder")
            if state.get("ucis") is not None:
                return list(state["ucis"])
            count = state["count"]  # issued (maybe) but not recorded: issue again, same keys
        else:
            state = {"run": secrets.token_hex(8), "product": self._product.id,
                     "account": self._account, "count": count, "ucis": None,
                     "started": datetime.now(UTC).isoformat(timespec="seconds")}
            if listed is not None:
                state["ucis"] = await self._check_listed(listed)
            write_private(run_file, json.dumps(state, indent=1).encode())
            if listed is not None:
                return list(state["ucis"])
        assert count is not None
        ucis: list[str] = []
        for start in range(0, count, MAX_BATCH):
            size = min(MAX_BATCH, count - start)
            result = await self._journal.issue(IssueRequest(
                product=self._product.id, actor=self._actor, count=size,
                idempotency_key=f"preclaim-run:{state['run']}:{start}",
                fingerprint=json.dumps([self._product.id, None, size, True])))
            ucis += result.ucis
        state["ucis"] = ucis
        write_private(run_file, json.dumps(state, indent=1).encode())
        return ucis

    async def _check_listed(self, listed: list[str]) -> list[str]:
        ucis = list(dict.fromkeys(listed))
        known = await self._journal.many(ucis, ())
        for uci in ucis:
            unit = known.get(uci)
            if unit is None:
                raise RunError(f"unit {uci_codec.human(uci)} is not in this station's journal")
            if unit.product != self._product.id:
                raise RunError(f"unit {uci_codec.human(uci)} is of product {unit.product}, "
                               f"not {self._product.id}")
            if unit.state == "voided":
                raise RunError(f"unit {uci_codec.human(uci)} is voided")
        return ucis

    # -- the run -----------------------------------------------------------------------------

    async def run(self, ucis: list[str], worker: OutboxWorker, *, wait: float = 600.0,
                  batch: int = 500) -> RunResult:
        """Keys, requests and bundles for `ucis`; units still unanswered after `wait`
        seconds stay queued (run again to finish them)."""
        started = time.perf_counter()
        result = RunResult()
        units = await self._journal.many(ucis, _KINDS)
        todo = [u for u in ucis if units[u].last("preclaimed") is None
                and units[u].last("preclaim_failed") is None]
        keys = await self._keys(todo, result)
        await self._queue(keys, units)
        await self._drain(worker, todo, wait, batch)
        units = await self._journal.many(ucis, _KINDS)
        await asyncio.to_thread(self._bundles, ucis, units, result)
        result.elapsed = time.perf_counter() - started
        return result

    async def _keys(self, ucis: list[str], result: RunResult) -> list[KeyOutcome]:
        """Each unit's key and CSR, made in parallel by `jobs` processes."""
        if not ucis:
            return []
        chunks = [ucis[i:i + KEY_CHUNK] for i in range(0, len(ucis), KEY_CHUNK)]
        loop = asyncio.get_running_loop()
        out: list[KeyOutcome] = []
        # spawn: a fork of this process would copy the journal's threads mid-flight.
        with ProcessPoolExecutor(min(self._jobs, len(chunks)),
                                 mp_context=get_context("spawn")) as pool, \
                self._bar(len(ucis), "keys and CSRs") as bar:
            futures = [loop.run_in_executor(pool, make_keys, str(self._out), chunk,
                                            self._key_type) for chunk in chunks]
            for done in asyncio.as_completed(futures):
                made = await done
                out += made
                bar.update(len(made))
        if any(k.made for k in out):  # the keys are on disk before their CSRs are queued
            await asyncio.to_thread(sync_files, self._out)
        result.keys_made = sum(k.made for k in out)
        result.keys_reused = len(out) - result.keys_made
        return out

    async def _queue(self, keys: list[KeyOutcome], units: dict[str, Unit]) -> None:
        """Journal each new key's CSR with its pre-claim request (group commit batches
        them); a key queued before (a resumed run) is not queued again."""
        jobs = []
        for key in keys:
            unit = units[key.uci]
            if unit.last("key_made", spki_sha256=key.spki_sha256) is not None:
                continue
            registration = RegisterRequest(
                key.uci, self._product.id, unit.hardware_id or "", self._product.model,
                self._product.name, unit.created_at)
            request = PreclaimRequest(registration, self._account, key.csr_pem,
                                      key.spki_sha256)
            jobs.append(self._journal.record(
                key.uci, "key_made", self._actor,
                {"path": str(key_path(self._out, key.uci)), "origin": "station",
                 "spki_sha256": key.spki_sha256, "csr": key.csr_pem},
                enqueue=request))
        for start in range(0, len(jobs), 2000):
            await asyncio.gather(*jobs[start:start + 2000])

    async def _drain(self, worker: OutboxWorker, ucis: list[str], wait: float,
                     batch: int) -> None:
        """Send the queue until every unit of the run is answered or `wait` runs out."""
        waiting = set(ucis)
        deadline = time.monotonic() + wait
        with self._bar(len(waiting), "pre-claim requests") as bar:
            while waiting and time.monotonic() < deadline:
                answered = await worker.drain_once(batch)
                if answered:
                    pending = {e.uci for e in await self._journal.outbox_entries(
                        "pending", limit=10_000_000) if e.action == "preclaim"}
                    done = waiting - pending
                    bar.update(len(done))
                    waiting -= done
                else:
                    await asyncio.sleep(0.2)  # everything left waits for its backoff

    def _bundles(self, ucis: list[str], units: dict[str, Unit], result: RunResult) -> None:
        """Certificate, CA chain and provision.json5 beside each answered unit's key; the
        CSV report of every unit."""
        for uci in ucis:
            unit = units[uci]
            key = key_path(self._out, uci)
            spki = _key_id(key)
            granted = unit.last("preclaimed", spki_sha256=spki) if spki else None
            refused = unit.last("preclaim_failed", spki_sha256=spki) if spki else None
            row = {"uci": uci, "human": uci_codec.human(uci), "status": "pending",
                   "fingerprint": "", "not_after": "", "reason": ""}
            if granted is not None:
                bundle = bundle_path(self._out, uci)
                data = make_bundle(uci, key.read_text(), granted.data)
                if not bundle.exists() or bundle.read_bytes() != data:
                    # Not synced one by one: the journal holds it, a rerun writes it again.
                    write_in_place(bundle, data)
                row.update(status="preclaimed", fingerprint=granted.data["fingerprint"],
                           not_after=granted.data["not_after"])
                result.preclaimed += 1
            elif refused is not None:
                row.update(status="failed", reason=refused.data.get("reason", ""))
                result.failed += 1
            else:
                result.pending += 1
            result.rows.append(row)
        _write_report(self._out / REPORT_FILE, result.rows)

    def _bar(self, total: int, what: str) -> tqdm[Any]:
        return tqdm(total=total, desc=what, unit="unit", disable=not self._progress,
                    smoothing=0.1)


def key_path(out: Path, uci: str) -> Path:
    return out / f"{uci}.key"


def bundle_path(out: Path, uci: str) -> Path:
    return out / f"{uci}.json"


def make_bundle(uci: str, key_pem: str, granted: dict[str, Any]) -> bytes:
    """A unit's bundle: every file it needs, by the name it has on the unit (device.key,
    device.crt, ca.crt, provision.json5), as one JSON object."""
    files = {KEY_FILE: key_pem}
    files.update((name, data.decode()) for name, data in certificate_files(uci, granted))
    return (json.dumps({"uci": uci, "files": files}, indent=1) + "\n").encode()


def _key_id(path: Path) -> str | None:
    try:
        return certs.spki_sha256(certs.load_key(path.read_bytes()).public_key())
    except (FileNotFoundError, certs.CertError):
        return None


def _write_report(path: Path, rows: Iterable[dict[str, str]]) -> None:
    with replacing(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, REPORT_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def read_unit_list(path: Path, parse: Callable[[str], str] = uci_codec.parse) -> list[str]:
    """UCIs from a CSV file with a `uci` column (any spelling a person writes)."""
    with path.open(newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        if reader.fieldnames is None or "uci" not in reader.fieldnames:
            raise RunError(f"{path}: the first line must name the columns, one of them 'uci'")
        ucis = []
        for line, row in enumerate(reader, 2):
            try:
                ucis.append(parse(row["uci"] or ""))
            except uci_codec.UciError as exc:
                raise RunError(f"{path}:{line}: {exc}") from exc
    if not ucis:
        raise RunError(f"{path}: no units listed")
    return ucis
