"""The `thingsboard` upstream against the simulated ThingsBoard (factory/testbed/clouds/), the
simulation refereed by ThingsBoard's official Python REST client (tb-rest-client), the error
classification against a small server answering ThingsBoard's error bodies on cue, and a unit
made by the station claimed with the secret printed on its label."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tb_rest_client.models import ClaimRequest
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client import RestClient

from factory import claim_secret
from factory.claim_secret import ClaimSecrets
from factory.config import ConfigError, load
from factory.journal import open_journal
from factory.labels.making import Label, LabelMaker
from factory.labels.products import ProductLabels
from factory.station import registration
from factory.testbed.clouds.thingsboard.app import make_app
from factory.testbed.clouds.thingsboard.keys import STORE, Settings
from factory.uci import new_uci, parse
from factory.units.pipeline import Identify, Issue, Pipeline, Step, UnitRun, Verify, Write
from factory.upstream import ConflictError, PermanentError, Registration, RetryableError
from factory.upstream.kinds import upstream_client
from factory.upstream.outbox import OutboxWorker
from factory.upstream.thingsboard import ThingsBoardUpstream
from factory.upstream.thingsboard_api import ApiKey, Login, ThingsBoardApi
from tests.conftest import CONFIG_TEXT, PRODUCT, write_config
from tests.test_labels_station import CLAIM_URL, qr_codes
from tests.test_pipeline import MemoryUnit

TENANT = Login("tenant@thingsboard.org", "tenant")
CREATED = dt.datetime(2026, 11, 20, 9, 14, 3, tzinfo=dt.UTC)
SECRET = "7KQ2-M9XD-3FHT-0W5R"


def registration_of(uci: str, *, expires: dt.datetime | None = None,
                    **changes: Any) -> Registration:
    fields: dict[str, Any] = {"uci": uci, "product": "sensor-v2", "hardware_id": "7CDFA100033B",
                              "model": "SV2-EU", "name": "Sensor v2", "created": CREATED}
    if expires is not None:
        fields |= {"claim_secret_hash": "pbkdf2$unused-by-thingsboard", "claim_expires": expires}
    return Registration(**(fields | changes))


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[TestServer]:
    server = TestServer(make_app(Settings(db=tmp_path / "tb.db")), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def url_of(server: TestServer) -> str:
    return str(server.make_url("/")).rstrip("/")


@contextlib.asynccontextmanager
async def adapter(server: TestServer, credentials: Login | ApiKey = TENANT,
                  secret: Callable[[str], str] = lambda _: SECRET, **api: Any,
                  ) -> AsyncIterator[tuple[ThingsBoardUpstream, ThingsBoardApi]]:
    async with aiohttp.ClientSession() as session:
        tb = ThingsBoardApi(session, url_of(server), credentials, **api)
        yield ThingsBoardUpstream(tb, station="line-1", secret_for=secret,
                                  device_profiles={"sensor-v2": "Sensor v2"}), tb


def official_client(server: TestServer, username: str, password: str) -> RestClient:
    """tb-rest-client, logged in (it is synchronous: call it in a thread)."""
    client = RestClient(url_of(server))
    client.login(username, password)
    return client


async def test_register_makes_a_device_in_its_profile_once(cloud: TestServer) -> None:
    uci = new_uci()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    async with adapter(cloud) as (upstream, api):
        first = await upstream.register(registration_of(uci, expires=expires))
        again = await upstream.register(registration_of(uci, expires=expires))
        other = await upstream.register(registration_of(new_uci()))
        seen = await upstream.lookup(uci)
        with pytest.raises(PermanentError) as unknown:
            await upstream.lookup(new_uci())
    assert first.created and not again.created and other.created
    assert api.logins == 1
    assert (seen.uci, seen.product, seen.model, seen.hardware_id, seen.name) == (
        uci, "sensor-v2", "SV2-EU", "7CDFA100033B", "Sensor v2")
    assert seen.created == CREATED and seen.claim.status == "unclaimed"
    assert seen.has_claim_secret and seen.claim_expires is not None
    assert abs(seen.claim_expires - expires) < dt.timedelta(seconds=1)
    assert unknown.value.status == 404

    def referee() -> tuple[Any, dict[str, Any], list[str]]:
        client = official_client(cloud, "tenant@thingsboard.org", "tenant")
        device = client.get_tenant_device(uci)
        rows = client.get_attributes_by_scope(device.id, "SERVER_SCOPE",
                                              keys="claimingData,product,station")
        profiles = client.get_device_profile_infos(page_size=10, page=0)
        return device, {r.key: r.value for r in rows}, [p.name for p in profiles.data]

    device, attributes, profiles = await asyncio.to_thread(referee)
    assert device.name == uci and device.type == "Sensor v2" and profiles == ["Sensor v2"]
    assert attributes["product"] == "sensor-v2" and attributes["station"] == "line-1"
    # One JSON value, as ThingsBoard's server-side claiming wants it.
    assert json.loads(attributes["claimingData"]) == {
        "secretKey": SECRET, "expirationTime": int(expires.timestamp() * 1000)}


async def test_a_device_held_with_other_attributes_is_a_conflict(cloud: TestServer) -> None:
    uci = new_uci()
    async with adapter(cloud) as (upstream, _):
        await upstream.register(registration_of(uci))
        with pytest.raises(ConflictError) as conflict:
            await upstream.register(registration_of(uci, model="SV2-US", hardware_id="X"))
        with pytest.raises(ConflictError) as profile:
            await upstream.register(registration_of(uci, product="other-product"))
    assert conflict.value.conflicting == ("model", "hardware_id")
    assert "product" in profile.value.conflicting and "device_profile" in profile.value.conflicting
    assert "a person" in conflict.value.reason


async def test_claims_as_thingsboard_answers_them_through_the_official_client(
        cloud: TestServer) -> None:
    uci, stale = new_uci(), new_uci()
    async with adapter(cloud) as (upstream, _):
        await upstream.register(registration_of(
            uci, expires=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)))
        await upstream.register(registration_of(
            stale, expires=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
        await upstream.register(registration_of(bare := new_uci()))

    def refusal(client: RestClient, name: str, key: str) -> tuple[int, str]:
        with pytest.raises(ApiException) as refused:
            client.claim_device_by_name(name, ClaimRequest(secret_key=key))
        return refused.value.status, json.loads(refused.value.body)

    def customers() -> dict[str, Any]:
        buyer = official_client(cloud, "customer@thingsboard.org", "customer")
        other = official_client(cloud, "customerB@thingsboard.org", "customer")
        seen: dict[str, Any] = {
            "wrong": refusal(buyer, uci, "AAAA-AAAA-AAAA-AAAA"),
            "expired": refusal(buyer, stale, SECRET),
            "no data": refusal(buyer, bare, ""),
            "claimed": buyer.claim_device_by_name(uci, ClaimRequest(secret_key=SECRET)),
            "owned": refusal(other, uci, SECRET),
        }
        with pytest.raises(ApiException) as foreign:
            other.re_claim_device(uci)
        seen["foreign release"] = foreign.value.status
        buyer.re_claim_device(uci)
        # ThingsBoard deletes claimingData on a successful claim: released, the unit needs
        # new claiming data before anyone can claim it with a secret again.
        seen["after release"] = refusal(other, uci, SECRET)
        return seen

    seen = await asyncio.to_thread(customers)
    assert seen["wrong"] == seen["expired"] == seen["no data"] == (400, "FAILURE")
    assert seen["claimed"]["response"] == "SUCCESS"
    assert seen["claimed"]["device"]["name"] == uci
    assert seen["owned"] == (400, "CLAIMED")
    assert seen["foreign release"] == 403
    assert seen["after release"] == (400, "FAILURE")
    async with adapter(cloud) as (upstream, _):
        assert (await upstream.lookup(uci)).claim.status == "unclaimed"
        # A repeat of the registration (a resent outbox entry) owes the claiming data again.
        await upstream.register(registration_of(
            uci, expires=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)))
        assert (await upstream.lookup(uci)).has_claim_secret


async def test_a_claimed_unit_keeps_its_owner_when_registered_again(cloud: TestServer) -> None:
    uci = new_uci()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    async with adapter(cloud) as (upstream, _):
        await upstream.register(registration_of(uci, expires=expires))
        buyer = await asyncio.to_thread(official_client, cloud, "customer@thingsboard.org",
                                        "customer")
        await asyncio.to_thread(buyer.claim_device_by_name, uci, ClaimRequest(secret_key=SECRET))
        again = await upstream.register(registration_of(uci, expires=expires))
    assert not again.created and again.device.claim.status == "claimed"
    assert not again.device.has_claim_secret  # not handed out again to a claimed unit


async def test_a_refused_token_means_one_new_login_and_a_bad_login_is_permanent(
        cloud: TestServer) -> None:
    async with adapter(cloud) as (upstream, api):
        await upstream.register(registration_of(new_uci()))
        await cloud.app[STORE].rotate_signing_key()  # every token issued so far is refused
        await upstream.register(registration_of(new_uci()))
        assert api.logins == 2
    async with adapter(cloud, Login("tenant@thingsboard.org", "wrong")) as (upstream, _):
        with pytest.raises(PermanentError) as refused:
            await upstream.register(registration_of(new_uci()))
    assert refused.value.status == 401 and "Invalid username or password" in refused.value.reason
    assert "login_file" in refused.value.reason
    key = await cloud.app[STORE].add_api_key("tenant@thingsboard.org")
    async with adapter(cloud, ApiKey(key)) as (upstream, api):
        assert (await upstream.register(registration_of(new_uci()))).created
        assert api.logins == 0


async def test_a_token_near_its_expiry_is_refreshed_not_logged_in_again(
        cloud: TestServer) -> None:
    now = [dt.datetime.now(dt.UTC).timestamp()]
    async with adapter(cloud, clock=lambda: now[0]) as (upstream, api):
        await upstream.register(registration_of(new_uci()))
        now[0] += 9000 - 30  # inside the refresh margin of the 9000 s token
        await upstream.register(registration_of(new_uci()))
        assert api.logins == 1 and api.refreshes == 1


# --- errors, answered on cue ------------------------------------------------------------


@contextlib.asynccontextmanager
async def answering(status: int, body: Any, headers: dict[str, str] | None = None,
                    ) -> AsyncIterator[tuple[str, list[str]]]:
    """A server that logs anyone in and answers every other request with `status`."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        if request.path == "/api/auth/login":
            return web.json_response({"token": "a.b.c", "refreshToken": "r"})
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield url_of(server), seen
    finally:
        await server.close()


def tb_error(status: int, message: str, code: int) -> dict[str, Any]:
    return {"status": status, "message": message, "errorCode": code, "timestamp": 0}


@pytest.mark.parametrize(("status", "headers", "retry_after"), [
    (429, {"Retry-After": "17"}, 17.0), (503, {}, None), (500, {"Retry-After": "2"}, 2.0)])
async def test_busy_and_broken_servers_are_retried(status: int, headers: dict[str, str],
                                                   retry_after: float | None) -> None:
    body = tb_error(status, "Too many requests for current tenant!", 33)
    async with answering(status, body, headers) as (url, _), aiohttp.ClientSession() as s:
        upstream = ThingsBoardUpstream(ThingsBoardApi(s, url, TENANT), station="line-1")
        with pytest.raises(RetryableError) as retry:
            await upstream.register(registration_of(new_uci()))
    assert retry.value.status == status and retry.value.retry_after == retry_after
    assert "Too many requests" in retry.value.reason


async def test_a_bad_request_keeps_thingsboards_message() -> None:
    body = tb_error(400, "Device profile name should be specified!", 30)
    async with answering(400, body) as (url, _), aiohttp.ClientSession() as s:
        upstream = ThingsBoardUpstream(ThingsBoardApi(s, url, TENANT), station="line-1")
        with pytest.raises(PermanentError) as refused:
            await upstream.register(registration_of(new_uci()))
    assert refused.value.status == 400 and not isinstance(refused.value, ConflictError)
    assert "Device profile name should be specified! (ThingsBoard error code 30)" in \
        refused.value.reason


async def test_a_second_401_is_permanent_after_one_new_login() -> None:
    body = tb_error(401, "Token has expired", 11)
    async with answering(401, body) as (url, seen), aiohttp.ClientSession() as s:
        api = ThingsBoardApi(s, url, TENANT)
        with pytest.raises(PermanentError) as refused:
            await ThingsBoardUpstream(api, station="line-1").register(
                registration_of(new_uci()))
    assert refused.value.status == 401 and "credentials are refused" in refused.value.reason
    assert seen.count("POST /api/auth/login") == 2 and api.logins == 2


async def test_no_answer_is_retried() -> None:
    async with aiohttp.ClientSession() as s:
        api = ThingsBoardApi(s, "http://127.0.0.1:9", TENANT, timeout=2)
        with pytest.raises(RetryableError):
            await ThingsBoardUpstream(api, station="line-1").lookup(new_uci())


# --- config -----------------------------------------------------------------------------


def tb_config(folder: Path, upstream: str, *, secret_days: int = 0) -> Path:
    """The test station without its pre-claimed product, with `upstream` as [upstream]."""
    text = CONFIG_TEXT.split("[[products]]")
    products = "[[products]]" + text[1]
    if secret_days:
        products = products.replace('model = "AQ-100"', f'model = "AQ-100"\nlabel = '
                                    f'"thermal-50x30-secret"\nqr = "{CLAIM_URL}"\n'
                                    f'claim_secret_days = {secret_days}')
    root = Path(__file__).resolve().parent.parent
    head = text[0].replace('journal = "journal.sqlite"',
                           f'journal = "journal.sqlite"\nlabels = "{root}/labels"')
    return write_config(folder, head + products + "\n[upstream]\n" + upstream)


@pytest.mark.parametrize(("upstream", "key", "reason"), [
    ('kind = "thingsboard"\nurl = "http://tb:8080"\n', "login_file", "exactly one"),
    ('kind = "thingsboard"\nurl = "http://tb:8080"\nlogin_file = "a"\napi_key_file = "b"\n',
     "login_file", "exactly one"),
    ('kind = "thingsboard"\nurl = "http://tb:8080/api"\nlogin_file = "a"\n', "url", "host"),
    ('kind = "thingsboard"\nurl = "http://tb:8080"\ntoken_file = "a"\n', "token_file",
     "login_file"),
    ('kind = "thingsboard"\nurl = "http://tb:8080"\nlogin_file = "a"\npolicy = "p"\n',
     "policy", "aws-iot"),
    ('kind = "http"\nurl = "http://tb:8080"\ntoken_file = "a"\nlogin_file = "b"\n',
     "login_file", "thingsboard"),
])
def test_bad_thingsboard_settings_name_the_key(tmp_path: Path, upstream: str, key: str,
                                               reason: str) -> None:
    with pytest.raises(ConfigError) as bad:
        load(tb_config(tmp_path, upstream))
    assert bad.value.key == f"upstream.{key}" and reason in bad.value.reason


def test_a_pre_claimed_product_cannot_use_thingsboard(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG_TEXT + '\n[upstream]\nkind = "thingsboard"\n'
                                                'url = "http://tb:8080"\nlogin_file = "a"\n')
    with pytest.raises(ConfigError, match="pre-claimed"):
        load(path)


def test_thingsboard_settings_are_read(tmp_path: Path) -> None:
    config = load(tb_config(tmp_path, 'kind = "thingsboard"\nurl = "https://tb.example/"\n'
                                      'api_key_file = "tb.key"\n[upstream.device_profiles]\n'
                                      f'"{PRODUCT}" = "Air sensors"\n'))
    assert config.upstream.url == "https://tb.example" and config.upstream.login_file is None
    assert config.upstream.api_key_file == tmp_path / "tb.key"
    assert config.upstream.device_profiles == {PRODUCT: "Air sensors"}


# --- end to end: the station's unit, claimed with its label's secret --------------------


@pytest.mark.slow
async def test_a_station_unit_is_claimed_with_the_secret_on_its_label(
        tmp_path: Path, cloud: TestServer) -> None:
    (tmp_path / "tb-login.json").write_text(json.dumps(
        {"username": "tenant@thingsboard.org", "password": "tenant"}))
    config = load(tb_config(tmp_path, f'kind = "thingsboard"\nurl = "{url_of(cloud)}"\n'
                                      'login_file = "tb-login.json"\n', secret_days=30))
    secrets = ClaimSecrets.open(claim_secret.key_path(config.journal))
    journal = await open_journal(config.journal, config.station_id)
    try:
        products = ProductLabels(config, secrets)
        products.check()
        product = config.product(PRODUCT)
        assert product is not None
        steps: list[Step] = [Identify(), Issue(), Write(), Verify(registration),
                             Label(LabelMaker(config, journal, products))]
        run = await Pipeline(journal, steps).provision(
            UnitRun("f1", product, "config/device.json5"), MemoryUnit())
        assert run.uci is not None
        async with contextlib.AsyncExitStack() as stack:
            worker = OutboxWorker(journal, await upstream_client(config, stack),
                                  secrets=secrets)
            assert await worker.drain_once() == 1
        assert (await journal.unit(run.uci)).last("registered") is not None
    finally:
        await journal.close()

    # What a buyer has: the label. The UCI from its QR code, the secret from its text.
    pdf = config.printer.keep / f"{run.uci}-1.pdf"
    [qr] = await asyncio.to_thread(qr_codes, pdf)
    name = parse(qr.rsplit("/", 1)[1])
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    printed = next(w for w in text.split() if w.count("-") == 3 and len(w) == 19)
    assert name == run.uci and printed == secrets.secret(run.uci)

    def buyer() -> tuple[tuple[int, str], dict[str, Any]]:
        client = official_client(cloud, "customer@thingsboard.org", "customer")
        with pytest.raises(ApiException) as wrong:
            client.claim_device_by_name(name, ClaimRequest(secret_key=printed[::-1]))
        return ((wrong.value.status, json.loads(wrong.value.body)),
                client.claim_device_by_name(name, ClaimRequest(secret_key=printed)))

    wrong, claimed = await asyncio.to_thread(buyer)
    assert wrong == (400, "FAILURE")
    assert claimed["response"] == "SUCCESS" and claimed["device"]["name"] == run.uci


def test_sim_cloud_makes_an_api_key_the_simulation_accepts(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    key_file = tmp_path / "tb.key"
    run_cli(None, "sim-cloud", "thingsboard", "--db", str(tmp_path / "tb.db"),
            "--api-key-file", str(key_file))
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "tb.db").stat().st_mode & 0o777 == 0o600

    async def check() -> None:
        server = TestServer(make_app(Settings(db=tmp_path / "tb.db")), host="127.0.0.1")
        await server.start_server()
        try:
            async with adapter(server, ApiKey(key_file.read_text().strip())) as (upstream, _):
                assert (await upstream.register(registration_of(new_uci()))).created
        finally:
            await server.close()

    asyncio.run(check())
