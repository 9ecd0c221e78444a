"""The `aws-iot` upstream against a local AWS IoT endpoint: moto's server in its own process,
reached by boto3 over real HTTP through a proxy that can answer with AWS's errors on cue."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import random
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from factory.config import ConfigError, StationConfig, load
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.station import start_upstream
from factory.uci import new_uci
from factory.upstream import (
    ConflictError,
    PermanentError,
    Registration,
    RetryableError,
)
from factory.upstream import aws_attributes as attrs
from factory.upstream.aws import AwsIotUpstream, make_client
from factory.upstream.kinds import aws_upstream
from factory.upstream.outbox import OutboxWorker
from tests.aws_iot import FAKE_CREDENTIALS, REGION, Fault, FaultProxy, MotoServer, free_port
from tests.conftest import CONFIG_TEXT, PRODUCT, ROOT, write_config
from tests.test_outbox import provision
from tests.test_upstream_http import csr_for

pytestmark = pytest.mark.slow

POLICY = "factory-units"
GROUP = "line-1"
CREATED = dt.datetime(2026, 11, 20, 9, 14, 3, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials through the standard chain; the developer's ~/.aws stays out."""
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def admin(moto: MotoServer) -> Any:
    """A plain boto3 client straight to moto: to look at (and tamper with) the account."""
    client = boto3.client("iot", region_name=REGION, endpoint_url=moto.url)
    try:
        client.create_policy(policyName=POLICY, policyDocument='{"Version": "2012-10-17", '
                             '"Statement": [{"Effect": "Allow", "Action": "iot:Connect", '
                             '"Resource": "*"}]}')
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    return client


@pytest.fixture
async def proxy(moto: MotoServer) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(moto.url)
    await p.start()
    yield p
    await p.close()


@pytest.fixture
def upstream(proxy: FaultProxy, admin: Any) -> Iterator[AwsIotUpstream]:
    adapter = AwsIotUpstream(make_client(REGION, endpoint_url=proxy.url, timeout=5),
                             station="test-station", policy=POLICY, thing_group=GROUP)
    yield adapter
    adapter.close()


def registration(uci: str, **changes: Any) -> Registration:
    fields: dict[str, Any] = {"uci": uci, "product": "sensor-v2",
                              "hardware_id": "7C:DF:A1:00:03:3B", "model": "SV2-EU",
                              "name": "Sensor v2 (EU)", "created": CREATED}
    return Registration(**(fields | changes))


def certificates(admin: Any, uci: str) -> list[dict[str, Any]]:
    """The certificates attached to the thing, as AWS describes them."""
    arns = admin.list_thing_principals(thingName=uci)["principals"]
    return [admin.describe_certificate(certificateId=arn.rsplit("/", 1)[1])
            ["certificateDescription"] for arn in arns]


def public_key(pem: str) -> Any:
    return x509.load_pem_x509_certificate(pem.encode()).public_key()


def account_certificates(admin: Any, uci: str) -> list[dict[str, Any]]:
    """Every certificate in the account whose subject CN is `uci`, attached or not."""
    found = []
    for listed in admin.list_certificates()["certificates"]:
        described = admin.describe_certificate(certificateId=listed["certificateId"])
        info = described["certificateDescription"]
        cert = x509.load_pem_x509_certificate(info["certificatePem"].encode())
        if cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == uci:
            found.append(info)
    return found


def gone(admin: Any, cert_id: str) -> bool:
    try:
        admin.describe_certificate(certificateId=cert_id)
    except ClientError as exc:
        return bool(exc.response["Error"]["Code"] == "ResourceNotFoundException")
    return False


# --- register ---------------------------------------------------------------------------


async def test_register_makes_a_thing_then_finds_it_then_refuses_another(upstream, admin):
    uci = new_uci()
    first = await upstream.register(registration(uci))
    assert first.created
    thing = admin.describe_thing(thingName=uci)
    assert thing["thingTypeName"] == "sensor-v2"
    held = thing["attributes"]
    assert {k: held[k] for k in ("product", "model", "hardware_id", "name", "station",
                                 "created")} == {
        "product": "sensor-v2", "model": "SV2-EU", "hardware_id": "7C:DF:A1:00:03:3B",
        "name": "Sensor#20v2#20#28EU#29", "station": "test-station",
        "created": "2026-11-20T09:14:03Z"}
    thing_type = admin.describe_thing_type(thingTypeName="sensor-v2")
    assert thing_type["thingTypeProperties"]["searchableAttributes"] == [
        "hardware_id", "model", "station"]
    in_group = admin.list_things_in_thing_group(thingGroupName=GROUP)["things"]
    assert uci in in_group
    device = first.device
    assert (device.uci, device.product, device.hardware_id, device.model, device.name) == (
        uci, "sensor-v2", "7C:DF:A1:00:03:3B", "SV2-EU", "Sensor v2 (EU)")
    assert device.created == CREATED and device.claim.status == "unclaimed"
    assert device.certificate is None

    again = await upstream.register(registration(uci))  # the outbox's retry
    assert not again.created and again.device == device
    assert await upstream.lookup(uci) == device

    with pytest.raises(ConflictError) as caught:
        await upstream.register(registration(uci, model="SV2-US", hardware_id="other"))
    assert caught.value.conflicting == ("model", "hardware_id")
    assert caught.value.problem_type == "urn:factory-station:problem:conflict"
    assert admin.describe_thing(thingName=uci)["attributes"]["model"] == "SV2-EU"


async def test_a_claim_secret_goes_up_as_its_hash_and_expiry(upstream, admin):
    uci, expires = new_uci(), CREATED + dt.timedelta(days=365)
    result = await upstream.register(registration(
        uci, claim_secret_hash="pbkdf2$10000$c2FsdA$aGFzaA+/", claim_expires=expires))
    assert result.device.has_claim_secret and result.device.claim_expires == expires
    held = admin.describe_thing(thingName=uci)["attributes"]
    assert held["claim_secret_hash"] == "pbkdf2#2410000#24c2FsdA#24aGFzaA#2B/"


async def test_a_value_too_long_for_aws_is_permanent(upstream):
    with pytest.raises(PermanentError, match="attribute name") as caught:
        await upstream.register(registration(new_uci(), name="x " * 300))
    assert caught.value.status == 400


# --- pre-claim --------------------------------------------------------------------------


async def test_preclaim_certifies_the_units_key_with_the_policy(upstream, admin):
    uci = new_uci()
    await upstream.register(registration(uci))
    key, csr = csr_for(uci)
    issued = await upstream.preclaim(uci, "acme-fleet", csr)
    assert issued.created and (issued.uci, issued.account) == (uci, "acme-fleet")
    assert issued.endpoint.startswith("mqtts://") and issued.endpoint.endswith(
        f"-ats.iot.{REGION}.amazonaws.com:8883")
    assert issued.ca_chain == ()
    cert = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    assert cert.public_key() == key.public_key()
    der = cert.public_bytes(serialization.Encoding.DER)
    assert issued.fingerprint == "sha256:" + hashlib.sha256(der).hexdigest()
    assert issued.not_after == cert.not_valid_after_utc

    held, = certificates(admin, uci)
    assert held["status"] == "ACTIVE" and public_key(held["certificatePem"]) == key.public_key()
    policies = admin.list_attached_policies(target=held["certificateArn"])["policies"]
    assert [p["policyName"] for p in policies] == [POLICY]

    retry = await upstream.preclaim(uci, "acme-fleet", csr)
    assert not retry.created and retry.certificate_pem == issued.certificate_pem
    assert retry.endpoint == issued.endpoint
    assert [c["certificateId"] for c in certificates(admin, uci)] == [held["certificateId"]]

    device = await upstream.lookup(uci)
    assert (device.claim.status, device.claim.account, device.claim.how) == (
        "claimed", "acme-fleet", "pre")
    assert device.claim.claimed_at is not None
    assert device.certificate is not None and device.certificate.fingerprint == issued.fingerprint
    assert device.model == "SV2-EU"  # the claim did not touch the registration


async def test_a_certificate_left_with_another_key_is_retired(upstream, admin):
    uci = new_uci()
    await upstream.register(registration(uci))
    # A crashed attempt certified a key the unit no longer has (the station made a new one).
    _, old_csr = csr_for(uci)
    old = admin.create_certificate_from_csr(certificateSigningRequest=old_csr, setAsActive=True)
    admin.attach_thing_principal(thingName=uci, principal=old["certificateArn"])
    admin.attach_policy(policyName=POLICY, target=old["certificateArn"])
    key, csr = csr_for(uci)
    issued = await upstream.preclaim(uci, "acme-fleet", csr)
    held, = certificates(admin, uci)
    assert held["status"] == "ACTIVE" and public_key(held["certificatePem"]) == key.public_key()
    assert held["certificatePem"] == issued.certificate_pem
    assert gone(admin, old["certificateId"])


async def test_a_certificate_attached_before_a_crash_is_reused(upstream, admin):
    uci = new_uci()
    await upstream.register(registration(uci))
    _, csr = csr_for(uci)
    # Killed after AttachThingPrincipal, before AttachPolicy and activation.
    made = admin.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=False)
    admin.attach_thing_principal(thingName=uci, principal=made["certificateArn"])
    issued = await upstream.preclaim(uci, "acme-fleet", csr)
    assert not issued.created and issued.certificate_pem == made["certificatePem"]
    held, = certificates(admin, uci)
    assert held["status"] == "ACTIVE"
    assert admin.list_attached_policies(target=held["certificateArn"])["policies"]


@pytest.mark.parametrize("step", ["/target-policies/", "/certificates/"])
async def test_a_preclaim_cut_off_midway_and_retried_leaves_one_active_certificate(
        upstream, admin, proxy, step):
    uci = new_uci()
    await upstream.register(registration(uci))
    key, csr = csr_for(uci)
    # AttachPolicy, or the activation (UpdateCertificate), fails after the certificate exists.
    proxy.fail(Fault(503, "ServiceUnavailableException",
                     matches=lambda r: r.method == "PUT" and r.path.startswith(step)))
    with pytest.raises(RetryableError):
        await upstream.preclaim(uci, "acme-fleet", csr)
    assert len(certificates(admin, uci)) == 1
    issued = await upstream.preclaim(uci, "acme-fleet", csr)
    held, = certificates(admin, uci)
    assert held["status"] == "ACTIVE" and held["certificatePem"] == issued.certificate_pem
    assert public_key(held["certificatePem"]) == key.public_key()
    assert [c["certificateId"] for c in account_certificates(admin, uci)] == [
        held["certificateId"]]


async def test_an_unattachable_certificate_is_deleted_not_left_dangling(upstream, admin, proxy):
    uci = new_uci()
    await upstream.register(registration(uci))
    _, csr = csr_for(uci)
    proxy.fail(Fault(400, "InvalidRequestException", "thing is attached to too many",
                     matches=lambda r: r.method == "PUT" and r.path.endswith("/principals")))
    with pytest.raises(PermanentError):
        await upstream.preclaim(uci, "acme-fleet", csr)
    assert account_certificates(admin, uci) == []


async def test_preclaim_refusals(upstream, admin):
    registered, unregistered = new_uci(), new_uci()
    await upstream.register(registration(registered))
    with pytest.raises(PermanentError) as caught:
        await upstream.preclaim(unregistered, "acme-fleet", csr_for(unregistered)[1])
    assert caught.value.status == 404 and "register the unit first" in caught.value.reason
    with pytest.raises(PermanentError) as caught:  # a CSR made for another unit
        await upstream.preclaim(registered, "acme-fleet", csr_for(unregistered)[1])
    assert caught.value.status == 422 and "CN" in caught.value.reason
    assert certificates(admin, registered) == []
    await upstream.preclaim(registered, "acme-fleet", csr_for(registered)[1])
    with pytest.raises(ConflictError, match="another account"):
        await upstream.preclaim(registered, "other-fleet", csr_for(registered)[1])
    with pytest.raises(PermanentError) as caught:
        await upstream.lookup(unregistered)
    assert caught.value.status == 404


# --- errors ------------------------------------------------------------------------------


async def test_throttling_is_retryable_with_the_servers_wish(upstream, proxy):
    proxy.fail(Fault(429, "ThrottlingException", "Rate exceeded", headers={"Retry-After": "7"}))
    with pytest.raises(RetryableError) as caught:
        await upstream.register(registration(new_uci()))
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert "ThrottlingException" in caught.value.reason
    assert len(proxy.seen) == 1  # botocore did not retry on its own
    proxy.fail(Fault(500, "InternalFailureException"))
    with pytest.raises(RetryableError) as caught:
        await upstream.register(registration(new_uci()))
    assert caught.value.status == 500 and caught.value.retry_after is None


async def test_access_denied_is_permanent_and_says_what_to_fix(upstream, proxy):
    proxy.fail(Fault(403, "AccessDeniedException", "User is not authorized to perform: "
                     "iot:DescribeThing"))
    with pytest.raises(PermanentError) as caught:
        await upstream.lookup(new_uci())
    assert caught.value.status == 403
    assert "iot:DescribeThing" in caught.value.reason and "IAM" in caught.value.reason


async def test_no_endpoint_is_retryable(admin):
    adapter = AwsIotUpstream(make_client(REGION, endpoint_url=f"http://127.0.0.1:{free_port()}",
                                         timeout=2), station="s", policy=POLICY)
    try:
        with pytest.raises(RetryableError) as caught:
            await adapter.register(registration(new_uci()))
        assert caught.value.status is None
    finally:
        adapter.close()


async def test_no_credentials_is_permanent(moto, monkeypatch):
    for key in FAKE_CREDENTIALS:
        monkeypatch.delenv(key)
    adapter = AwsIotUpstream(make_client(REGION, endpoint_url=moto.url), station="s",
                             policy=POLICY)
    try:
        with pytest.raises(PermanentError) as caught:
            await adapter.lookup(new_uci())
        assert caught.value.status == 401 and "credentials" in caught.value.reason
    finally:
        adapter.close()


# --- through the outbox ------------------------------------------------------------------


async def test_the_outbox_drains_registrations_into_aws_through_throttling(
        config: StationConfig, journal: Journal, upstream, admin, proxy):
    ucis = [await provision(config, journal, f"02:00:00:00:0a:{i:02x}") for i in range(3)]
    proxy.fail(Fault(429, "ThrottlingException", "Rate exceeded", count=4))
    worker = OutboxWorker(journal, upstream, base=0.01, cap=0.05, rng=random.Random(1))
    seen = []  # last_error is cleared by a success: look at it after every round
    for _ in range(100):
        await worker.drain_once()
        seen.append(worker.last_error)
        if (await journal.outbox_stats()).pending == 0:
            break
    stats = await journal.outbox_stats()
    assert (stats.pending, stats.done, stats.failed) == (0, 3, 0)
    assert any("ThrottlingException" in error for error in seen)
    for uci in ucis:
        thing = admin.describe_thing(thingName=uci)
        assert thing["thingTypeName"] == PRODUCT
        assert attrs.decode(thing["attributes"]["name"]) == "Acme Air Sensor"
        assert thing["attributes"]["station"] == "test-station"
        assert (await journal.unit(uci)).state == "registered"
    assert await worker.drain_once() == 0


async def test_the_outbox_keeps_units_queued_while_access_is_denied(
        config: StationConfig, journal: Journal, upstream, proxy):
    uci = await provision(config, journal, "02:00:00:00:0b:01")
    proxy.fail(Fault(403, "AccessDeniedException", "not authorized to perform iot:CreateThing"))
    worker = OutboxWorker(journal, upstream, cap=0.01)
    assert await worker.drain_once() == 0
    assert (await journal.unit(uci)).state == "verified"  # the station's fault, not the unit's
    assert (await journal.outbox_stats()).pending == 1


# --- attributes ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["Acme Air Sensor", "a#b", "ü ☃ +", "", "#41", "[x]=y,z"])
def test_attribute_values_round_trip(text: str) -> None:
    encoded = attrs.encode(text)
    assert all(c.isalnum() or c in "_.,@/:#=[]-" for c in encoded) and encoded.isascii()
    assert attrs.decode(encoded) == text



# --- killed mid-pre-claim ------------------------------------------------------------------

CHILD = """
import asyncio, sys
from factory.upstream.aws import AwsIotUpstream, make_client
url, uci, csr = sys.argv[1:]
adapter = AwsIotUpstream(make_client("eu-west-1", endpoint_url=url), station="test-station",
                         policy="factory-units")
asyncio.run(adapter.preclaim(uci, "acme-fleet", open(csr).read()))
"""

KILL_POINTS = {  # the request the station process hangs in when it is killed
    "attaching the thing": lambda uci: lambda r: r.method == "PUT" and r.path.endswith(
        f"/things/{uci}/principals"),
    "attaching the policy": lambda uci: lambda r: r.method == "PUT" and r.path.startswith(
        "/target-policies/"),
    "activating": lambda uci: lambda r: r.method == "PUT" and r.path.startswith(
        "/certificates/"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
async def test_killed_mid_preclaim_and_restarted_leaves_one_active_certificate(
        upstream, admin, proxy, tmp_path, point):
    uci = new_uci()
    await upstream.register(registration(uci))
    key, csr = csr_for(uci)
    (tmp_path / "csr.pem").write_text(csr)
    fault = Fault(0, "", hold=True, matches=KILL_POINTS[point](uci))
    proxy.fail(fault)
    station = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, proxy.url, uci, str(tmp_path / "csr.pem"),
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    await asyncio.wait_for(fault.reached.wait(), 60)
    station.kill()  # SIGKILL: no cleanup of any kind
    await station.wait()

    issued = await upstream.preclaim(uci, "acme-fleet", csr)  # the restarted station's retry
    held, = certificates(admin, uci)
    assert held["status"] == "ACTIVE" and held["certificatePem"] == issued.certificate_pem
    assert public_key(held["certificatePem"]) == key.public_key()
    # Killed between CreateCertificateFromCsr and AttachThingPrincipal, AWS keeps a certificate
    # nothing points at; it was made inactive and without a policy, so it cannot connect.
    others = [c for c in account_certificates(admin, uci)
              if c["certificateId"] != held["certificateId"]]
    for other in others:
        assert other["status"] == "INACTIVE"
        assert admin.list_attached_policies(target=other["certificateArn"])["policies"] == []
        assert admin.list_principal_things(principal=other["certificateArn"])["things"] == []
    assert len(others) == (1 if point == "attaching the thing" else 0)


# --- the station's wiring -----------------------------------------------------------------


def self_signed_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Root CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def aws_config(tmp_path: Path, endpoint: str, extra: str = "") -> StationConfig:
    return load(write_config(tmp_path, CONFIG_TEXT + f"""
[upstream]
kind = "aws-iot"
region = "{REGION}"
endpoint_url = "{endpoint}"
policy = "{POLICY}"
thing_group = "line-9"
{extra}"""))


async def test_the_station_drains_into_aws_iot_as_configured(tmp_path, proxy, admin):
    ca = self_signed_pem()
    (tmp_path / "AmazonRootCA1.pem").write_text(ca)
    config = aws_config(tmp_path, proxy.url, 'ca_file = "AmazonRootCA1.pem"')
    journal = await open_journal(config.journal, config.station_id)
    try:
        async with contextlib.AsyncExitStack() as stack:
            worker = await start_upstream(config, journal, stack)
            assert worker is not None
            uci = await provision(config, journal, "02:00:00:00:0c:01")
            assert await worker.drain_once() == 1
            assert (await journal.unit(uci)).state == "registered"
        thing = admin.describe_thing(thingName=uci)
        assert thing["thingTypeName"] == PRODUCT
        assert uci in admin.list_things_in_thing_group(thingGroupName="line-9")["things"]
        adapter = aws_upstream(config)
        try:
            issued = await adapter.preclaim(uci, "acme-fleet", csr_for(uci)[1])
        finally:
            adapter.close()
        assert issued.ca_chain == (ca,)
    finally:
        await journal.close()


async def test_the_station_refuses_a_bad_ca_file_or_profile(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError) as caught:
        aws_upstream(aws_config(tmp_path, "http://127.0.0.1:9", 'ca_file = "ca.pem"'))
    assert caught.value.key == "upstream.ca_file" and "PEM" in caught.value.reason
    with pytest.raises(ConfigError) as caught:
        aws_upstream(aws_config(tmp_path, "http://127.0.0.1:9", 'ca_file = "missing.pem"'))
    assert caught.value.key == "upstream.ca_file" and "cannot be read" in caught.value.reason
    with pytest.raises(ConfigError) as caught:
        aws_upstream(aws_config(tmp_path, "http://127.0.0.1:9", 'profile = "nobody"'))
    assert caught.value.key == "upstream.profile" and "nobody" in caught.value.reason


async def test_a_batch_preclaim_run_works_against_aws_iot(tmp_path, proxy, admin):
    """`factory preclaim`'s run with the aws-iot adapter: one thing per unit, one active
    certificate on it, certifying the key in the unit's bundle."""
    from factory.batch.preclaim import PreclaimRun
    from factory.certs import load_key, spki_sha256
    from factory.upstream.kinds import upstream_client
    from tests.conftest import OTHER_PRODUCT

    config = aws_config(tmp_path, proxy.url)
    product = config.product(OTHER_PRODUCT)
    assert product is not None and product.claim == "pre"
    journal = await open_journal(config.journal, config.station_id)
    try:
        async with contextlib.AsyncExitStack() as stack:
            client = await upstream_client(config, stack)
            run = PreclaimRun(journal, product, product.account, tmp_path / "run",
                              actor="test", jobs=1, progress=False)
            ucis = await run.units(4)
            result = await run.run(ucis, OutboxWorker(journal, client, concurrency=4),
                                   wait=60)
    finally:
        await journal.close()
    assert (result.preclaimed, result.failed, result.pending) == (4, 0, 0)
    for uci in ucis:
        attached = certificates(admin, uci)
        assert [c["status"] for c in attached] == ["ACTIVE"]
        key = load_key((tmp_path / "run" / f"{uci}.key").read_bytes())
        assert spki_sha256(public_key(attached[0]["certificatePem"])) == spki_sha256(
            key.public_key())
        assert admin.describe_thing(thingName=uci)["thingTypeName"] == OTHER_PRODUCT
