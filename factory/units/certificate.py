"""Pre-claim on the line: the unit's key pair and CSR (`MakeKey`), then its certificate
written and verified on the unit (`InstallCertificate`).

The key is made on the unit where the driver can (KEYGEN on framed firmware, openssl in a
console unit's shell), so it never leaves the unit. Otherwise the station makes it, writes
it to the unit and verifies it, and keeps nothing of it but the public key's hash. The CSR
goes to the upstream through the outbox (in the `key_made` event's transaction); the
certificate comes back as the `preclaimed` event, which `InstallCertificate` waits for.

Files on the unit, beside device.json5: device.key (0600), device.crt, ca.crt, and
provision.json5 naming the account, the endpoint and those files.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
from collections.abc import Callable
from typing import Any

from factory import certs, failpoints
from factory.journal.interface import OutboxRequest
from factory.journal.records import Event
from factory.journal.waiting import wait_for
from factory.units.driver import UnitDriver
from factory.units.errors import (
    PreclaimRefused,
    ProtocolError,
    UnitRefused,
    UpstreamPending,
    VerifyMismatch,
)
from factory.units.pipeline import Ledger, UnitRun

KEY_FILE, CERT_FILE, CA_FILE, PROVISION_FILE = (
    "device.key", "device.crt", "ca.crt", "provision.json5")
# The outbox request for a unit's CSR: (run, csr, key id) -> request.
MakePreclaimRequest = Callable[[UnitRun, str, str], OutboxRequest]


def unit_file(run: UnitRun, name: str) -> str:
    """Where `name` goes on the unit: beside its device.json5."""
    return posixpath.join(posixpath.dirname(run.device_path), name)


class MakeKey:
    """Key pair and CSR for a product with `claim = "pre"`; the pre-claim request is queued
    with the `key_made` event."""

    name = "keying"

    def __init__(self, request: MakePreclaimRequest, wake: Callable[[], None] = lambda: None,
                 key_type: certs.KeyType = "ec-p256") -> None:
        self._request, self._wake, self._key_type = request, wake, key_type

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        if run.product.claim != "pre" or run.uci is None:
            return
        unit = await ledger.unit(run.uci)
        run.issued_at = unit.created_at
        if unit.last("certificate_written") is not None:
            return  # InstallCertificate checks the files are still there
        path = unit_file(run, KEY_FILE)
        csr = await driver.make_key(path, run.uci)
        origin = "unit"
        if csr is None:
            origin = "station"
            made = await asyncio.to_thread(certs.key_and_csr, run.uci, self._key_type)
            await driver.write_file(path, made.key_pem)
            await driver.verify_file(path, made.key_pem)
            csr = made.csr_pem
            del made  # the only copy of the key is the unit's
        try:
            run.key_id = certs.csr_key_id(csr, run.uci)
        except certs.CertError as exc:
            raise ProtocolError(f"the unit's CSR is unusable: {exc}") from exc
        known = unit.last("key_made", spki_sha256=run.key_id)
        if known is None:  # a unit's own key, asked again after a re-plug, is queued once
            await ledger.record(run.uci, "key_made", run.actor, {
                "path": path, "origin": origin, "spki_sha256": run.key_id, "csr": csr},
                enqueue=self._request(run, csr, run.key_id))
            self._wake()
        run.log.append(f"key pair made on the {origin} ({path}); CSR queued for the upstream"
                       if known is None else f"the unit still holds its key ({path})")


class InstallCertificate:
    """Waits (up to `wait` seconds) for the unit's certificate from the upstream, then writes
    certificate, CA chain and provision.json5 to the unit and verifies them."""

    name = "certifying"

    def __init__(self, wait: float = 30.0) -> None:
        self._wait = wait

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        if run.product.claim != "pre" or run.uci is None:
            return
        if run.key_id is None:  # installed before: check the files are still whole
            unit = await ledger.unit(run.uci)
            written = unit.last("certificate_written")
            assert written is not None  # MakeKey set key_id otherwise
            run.key_id = written.data["spki_sha256"]
            granted = unit.last("preclaimed", spki_sha256=run.key_id)
            assert granted is not None
            files = _files(run, granted.data)
            try:
                for path, data in files:
                    await driver.verify_file(path, data)
                run.log.append("certificate still verifies on the unit")
                return
            except (VerifyMismatch, UnitRefused):  # changed or gone: written again below
                run.log.append("certificate files lost on the unit: writing them again")
        granted = await self._granted(run, ledger)
        if certs.certificate_key_id(granted.data["certificate"]) != run.key_id:
            raise PreclaimRefused("the upstream's certificate does not certify the unit's "
                                  "key")
        for path, data in _files(run, granted.data):
            await driver.write_file(path, data)
            failpoints.hit("certificate.file")
            await driver.verify_file(path, data)
        await ledger.record(run.uci, "certificate_written", run.actor, {
            "path": unit_file(run, CERT_FILE), "fingerprint": granted.data["fingerprint"],
            "spki_sha256": run.key_id, "account": granted.data["account"],
            "endpoint": granted.data["endpoint"]})
        run.log.append(f"certificate {granted.data['fingerprint'][:23]}… written for account "
                       f"{granted.data['account']}")

    async def _granted(self, run: UnitRun, ledger: Ledger) -> Event:
        """The `preclaimed` event for the unit's key; PreclaimRefused or UpstreamPending."""
        assert run.uci is not None and run.key_id is not None
        uci, key_id = run.uci, run.key_id

        async def answer() -> Event | None:
            unit = await ledger.unit(uci)
            refused = unit.last("preclaim_failed", spki_sha256=key_id)
            granted = unit.last("preclaimed", spki_sha256=key_id)
            if granted is None and refused is not None:
                raise PreclaimRefused(f"the upstream refused to pre-claim the unit: "
                                      f"{refused.data.get('reason', '')}")
            return granted

        # The outbox worker journals the answer: wake on each commit, never poll.
        granted = await wait_for(ledger, answer, self._wait)
        if granted is None:
            raise UpstreamPending(f"no certificate from the upstream within "
                                  f"{self._wait:g} s (the request stays queued)")
        return granted


def _files(run: UnitRun, granted: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The files a pre-claimed unit holds, from its `preclaimed` event, with their paths."""
    assert run.uci is not None
    return [(unit_file(run, name), data) for name, data in certificate_files(run.uci, granted)]


def certificate_files(uci: str, granted: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Certificate, CA chain and provision.json5 (names and bytes) from a `preclaimed`
    event's data; the same on a unit and in a batch run's bundle."""
    provision = {"id": uci, "account": granted["account"], "endpoint": granted["endpoint"],
                 "certificate": CERT_FILE, "key": KEY_FILE, "authority": CA_FILE}
    return [(CERT_FILE, granted["certificate"].encode()),
            (CA_FILE, "".join(granted["ca_chain"]).encode()),
            (PROVISION_FILE, (json.dumps(provision, indent=2) + "\n").encode())]
