"""The `claiming` step of a RainMaker product's unit: between issuing its UCI and writing its
NVS partition, get the unit's node id (once per unit: journaled as `node_assigned`, so a
re-plugged unit keeps it without asking again) and a certificate for a key the station makes
(the ROM bootloader cannot), and hand both to the write as the `rmaker_creds` namespace,
exactly as the RainMaker CLI writes it.

The key lives only in the unit's run (and then on the unit): the journal gets the
certificate (`preclaimed`, public) and the key's hash. A re-plugged unit that was done already
is re-checked: its rmaker_creds are read back, must hold the journaled node id and
certificate and a key the certificate certifies, and are written identically (so the write's
MD5 and read-back checks hold).

The service's answers become the pipeline's failures: throttling and 5xx are retried with the
outbox's backoff for up to the product's `preclaim_wait`, then the unit is put aside to be
plugged in again later; a refusal (quota, MAC, platform, token) fails the unit for a person.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cryptography import x509

from factory import certs, clock
from factory.journal.records import Event, Unit
from factory.units.driver import HoldsNvs, UnitDriver
from factory.units.errors import UnitError, VerifyMismatch
from factory.units.esp_nvs import Entry, Value
from factory.units.pipeline import Ledger, UnitRun
from factory.upstream import backoff
from factory.upstream.adapter import PermanentError, RetryableError
from factory.upstream.rainmaker import RainmakerUpstream

_T = TypeVar("_T")
NAMESPACE = "rmaker_creds"
RANDOM_BYTES = 64  # the CLI's gen_hex_str(): 64 random octets (the provisioning PoP's source)


class ClaimingPending(UnitError):
    code = "upstream-pending"
    action = ("put the unit aside and plug it in again later: the RainMaker claiming service "
              "did not answer in time (the unit keeps its UCI and node id; nothing was "
              "written)")


class ClaimRefused(UnitError):
    code = "preclaim-refused"
    action = ("set the unit aside for an engineer: fix what the reason names (quota, access "
              "token, MAC, platform), then plug the unit in again")


def platform_of(model: str) -> str:
    """RainMaker's platform name for the chip esptool detected ("ESP32-C3" → "esp32c3")."""
    return model.split(" ", 1)[0].replace("-", "").lower()


def creds_entries(node_id: bytes, mqtt_host: bytes, certificate: bytes, key_pem: bytes,
                  random_bytes: bytes, mqtt_cred_host: bytes = b"") -> list[Entry]:
    """The rmaker_creds entries as the CLI's node_info.csv has them: each `file,binary`
    (a blob of the file's bytes, given here as base64) and `random` as `hex2bin`."""
    def blob(key: str, value: bytes) -> Entry:
        return Entry(key, "base64", base64.b64encode(value).decode())

    items = [blob("node_id", node_id), blob("mqtt_host", mqtt_host)]
    if mqtt_cred_host:
        items.append(blob("mqtt_cred_host", mqtt_cred_host))
    items += [blob("client_cert", certificate), blob("client_key", key_pem),
              Entry("random", "hex2bin", random_bytes.hex())]
    return items


class ClaimNode:
    """Node id and certificate from the RainMaker claiming service, for claim = "pre"."""

    name = "claiming"

    def __init__(self, service: RainmakerUpstream, *, platform: str = "",
                 mqtt_cred_host: str = "", base: float = 1.0, cap: float = 300.0,
                 key_type: certs.KeyType = "ec-p256", rng: random.Random | None = None) -> None:
        self._service, self._platform, self._cred_host = service, platform, mqtt_cred_host
        self._base, self._cap, self._key_type = base, cap, key_type
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        if run.product.claim != "pre" or run.uci is None:
            return
        assert run.hardware_id is not None and run.identity is not None
        unit = await ledger.unit(run.uci)
        assigned = unit.last("node_assigned")
        if run.already_done and assigned is not None:
            await self._recheck(run, driver, unit, assigned)
            return
        if assigned is None:
            platform = self._platform or platform_of(run.identity.model)
            node_id = await self._ask(run, lambda: self._service.node_id(run.hardware_id or "",
                                                                          platform))
            await ledger.record(run.uci, "node_assigned", run.actor, {
                "node_id": node_id, "mac": run.hardware_id, "platform": platform})
        else:
            node_id = assigned.data["node_id"]
        made = await asyncio.to_thread(certs.key_and_csr, node_id, self._key_type)
        csr = made.csr_pem
        got = await self._ask(run, lambda: self._service.certify(node_id, csr))
        try:
            certified = certs.certificate_key_id(got.certificate_pem)
        except certs.CertError as exc:
            raise ClaimRefused(f"claim/verify answered an unusable certificate: {exc}") from exc
        if certified != made.spki_sha256:
            raise ClaimRefused("the claiming service's certificate does not certify the key "
                               "the station made for the unit")
        cert = x509.load_pem_x509_certificate(got.certificate_pem.encode())
        await ledger.record(run.uci, "preclaimed", run.actor, {
            "node_id": node_id, "account": self._service.account or run.product.account,
            "spki_sha256": made.spki_sha256, "fingerprint": certs.fingerprint(got.certificate_pem),
            "not_after": cert.not_valid_after_utc.isoformat(timespec="seconds"),
            "endpoint": got.mqtt_host, "certificate": got.certificate_pem, "ca_chain": []})
        run.key_id = made.spki_sha256
        run.nvs_extra = {NAMESPACE: creds_entries(
            node_id.encode(), got.mqtt_host.encode(), got.certificate_pem.encode(),
            made.key_pem, os.urandom(RANDOM_BYTES), self._cred_host.encode())}
        del made  # the only copies of the key: this run's partition image, then the unit
        run.log.append(f"claimed RainMaker node {node_id}"
                       f"{' (node id from the journal)' if assigned else ''}")

    async def _recheck(self, run: UnitRun, driver: UnitDriver, unit: Unit,
                       assigned: Event) -> None:
        """A done unit plugged in again: its credentials must still be the journal's."""
        node_id = assigned.data["node_id"]
        granted = unit.last("preclaimed")
        if granted is None or not isinstance(driver, HoldsNvs):
            raise ClaimRefused(f"unit {run.uci} was verified without RainMaker credentials "
                               "(its product was claimed differently then)")
        held: dict[str, Value] = (await driver.read_nvs(run.product)).get(NAMESPACE, {})
        where = f"the unit's {NAMESPACE}"
        if held.get("node_id") != node_id.encode():
            raise VerifyMismatch(f"{where} hold node {_text(held.get('node_id'))!r}, not the "
                                 f"journal's {node_id}")
        if held.get("client_cert") != granted.data["certificate"].encode():
            raise VerifyMismatch(f"{where} hold another certificate than the journal's "
                                 f"{granted.data['fingerprint'][:23]}…")
        key, extra = held.get("client_key"), held.get("random")
        if not isinstance(key, bytes) or not isinstance(extra, bytes):
            raise VerifyMismatch(f"{where} lack client_key or random")
        try:
            key_id = certs.spki_sha256(certs.load_key(key).public_key())
        except certs.CertError:
            key_id = ""
        if key_id != granted.data["spki_sha256"]:
            raise VerifyMismatch(f"{where} hold no key the journal's certificate certifies")
        cred_host = held.get("mqtt_cred_host", b"")
        mqtt_host = held.get("mqtt_host", b"")
        run.key_id = key_id
        run.nvs_extra = {NAMESPACE: creds_entries(
            node_id.encode(), mqtt_host if isinstance(mqtt_host, bytes) else b"",
            granted.data["certificate"].encode(), key, extra,
            cred_host if isinstance(cred_host, bytes) else b"")}
        run.log.append(f"RainMaker node {node_id}: its credentials still match the journal")

    async def _ask(self, run: UnitRun, call: Callable[[], Awaitable[_T]]) -> _T:
        """`call`, retried after throttling or 5xx (backoff with jitter, the server's
        Retry-After honoured) for up to the product's preclaim_wait seconds."""
        deadline = clock.monotonic() + run.product.preclaim_wait
        attempt = 0
        while True:
            try:
                return await call()
            except RetryableError as exc:
                wait = backoff.delay(attempt, base=self._base, cap=self._cap, rng=self._rng,
                                     retry_after=exc.retry_after)
                if clock.monotonic() + wait > deadline:
                    raise ClaimingPending(f"{exc.reason} (asked {attempt + 1} times in "
                                          f"{run.product.preclaim_wait:g} s)") from exc
                attempt += 1
                await asyncio.sleep(wait)
            except PermanentError as exc:
                raise ClaimRefused(exc.reason) from exc


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
