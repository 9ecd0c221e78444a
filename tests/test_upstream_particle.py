"""The `particle` upstream against the simulated Particle cloud (factory/testbed/clouds/particle),
the simulation refereed by Particle's official client (particle-api-js, run with node from
tests/particle_client, installed by scripts/test), the error classification against a small
server answering Particle's error bodies on cue, and a unit provisioned by the station imported
into its Particle product through the real builder and outbox."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from factory.config import ConfigError, load
from factory.journal import open_journal
from factory.station import registration
from factory.testbed.clouds.particle.app import STORE, Settings, make_app
from factory.uci import new_uci
from factory.units.pipeline import Identify, Issue, Pipeline, UnitRun, Verify, Write
from factory.upstream import ConflictError, PermanentError, Registration, RetryableError
from factory.upstream.kinds import upstream_client
from factory.upstream.outbox import OutboxWorker
from factory.upstream.particle import ParticleUpstream, device_id
from factory.upstream.particle_api import ParticleApi
from tests.conftest import CONFIG_TEXT, PRODUCT, write_config
from tests.test_pipeline import MemoryUnit

CLIENT = Path(__file__).resolve().parent / "particle_client"
CREATED = dt.datetime(2026, 11, 20, 9, 14, 3, tzinfo=dt.UTC)
PRODUCT_ID, SLUG, OTHER_ID = 12345, "air-sensor", 777
DEVICE = "e00fce68a5d1b3c2f0e1d2c3"


def registration_of(hardware_id: str = DEVICE, **changes: Any) -> Registration:
    fields: dict[str, Any] = {"uci": new_uci(), "product": PRODUCT, "hardware_id": hardware_id,
                              "model": "AQ-100", "name": "Acme Air Sensor", "created": CREATED}
    return Registration(**(fields | changes))


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[TestServer]:
    server = TestServer(make_app(Settings(db=tmp_path / "particle.db")), host="127.0.0.1")
    await server.start_server()
    store = server.app[STORE]
    await store.add_product(PRODUCT_ID, SLUG)
    await store.add_product(OTHER_ID, "other-maker")
    yield server
    await server.close()


def url_of(server: TestServer) -> str:
    return str(server.make_url("/")).rstrip("/")


async def member_token(cloud: TestServer, *products: int) -> str:
    return await cloud.app[STORE].add_token("factory@acme.example", "member",
                                            products or (PRODUCT_ID,))


@contextlib.asynccontextmanager
async def adapter(url: str, token: str, product: str = str(PRODUCT_ID),
                  ) -> AsyncIterator[ParticleUpstream]:
    async with aiohttp.ClientSession() as session:
        yield ParticleUpstream(ParticleApi(session, url, token, timeout=5),
                               products={PRODUCT: product})


def referee(server: TestServer, auth: str, call: str, **args: Any) -> dict[str, Any]:
    """One call of particle-api-js against the simulation: its answer, or its error."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: particle-api-js (Particle's official client) "
                    "cannot referee the simulated Particle cloud")
    if not (CLIENT / "node_modules" / "particle-api-js").is_dir():
        pytest.fail("particle-api-js is not installed: run scripts/test, or "
                    "npm ci --prefix tests/particle_client")
    request = {"baseUrl": url_of(server), "auth": auth, "call": call, "args": args}
    done = subprocess.run([node, str(CLIENT / "referee.js"), json.dumps(request)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_device_ids_are_24_hex_digits_in_lower_case() -> None:
    assert device_id("E00FCE68A5D1B3C2F0E1D2C3") == DEVICE
    assert device_id("7CDFA100033B") is None and device_id(DEVICE + "0") is None
    assert device_id("") is None and device_id("g" * 24) is None


async def test_register_imports_the_device_once(cloud: TestServer) -> None:
    token = await member_token(cloud)
    async with adapter(url_of(cloud), token) as upstream:
        # The station's hardware ids are upper case (factory/hardware.py); Particle's lower.
        first = await upstream.register(registration_of(DEVICE.upper()))
        again = await upstream.register(registration_of(DEVICE))
    async with adapter(url_of(cloud), token, SLUG) as by_slug:
        slug = await by_slug.register(registration_of(DEVICE))
    assert first.created and not again.created and not slug.created
    assert first.device.hardware_id == DEVICE

    seen = await asyncio.to_thread(referee, cloud, token, "getDevice", deviceId=DEVICE,
                                   product=str(PRODUCT_ID))
    assert seen["statusCode"] == 200 and seen["body"]["id"] == DEVICE
    assert seen["body"]["product_id"] == PRODUCT_ID


async def test_the_official_client_reads_the_import_answers(cloud: TestServer) -> None:
    token = await member_token(cloud, PRODUCT_ID, OTHER_ID)
    store = cloud.app[STORE]
    elsewhere, owned, protected = "a" * 24, "b" * 24, "c" * 24
    await store.put_device(elsewhere, product_id=OTHER_ID)
    await store.put_device(owned, owner="someone@example.com")
    await store.put_device(protected, product_id=OTHER_ID, protected=True)

    def calls() -> tuple[dict[str, Any], ...]:
        one = referee(cloud, token, "addDeviceToProduct", deviceId=DEVICE,
                      product=str(PRODUCT_ID))
        # particle-cli's way: a file of identifiers, one a line (multipart).
        listed = referee(cloud, token, "addDeviceToProduct", product=SLUG, file="\n".join(
            [DEVICE, elsewhere, owned, protected, "not-a-device-id"]))
        return one, listed

    one, listed = await asyncio.to_thread(calls)
    assert one["statusCode"] == 200
    assert one["body"]["updatedDeviceIds"] == [DEVICE] and one["body"]["updated"] == 1
    body = listed["body"]
    assert body["existingDeviceIds"] == [DEVICE] and body["updated"] == 0
    assert body["invalidDeviceIds"] == [elsewhere, "not-a-device-id"]
    assert body["nonmemberDeviceIds"] == [owned] and body["protectedDeviceIds"] == [protected]

    async with adapter(url_of(cloud), token) as upstream:
        refusals = {}
        for particle_id in (elsewhere, owned, protected):
            with pytest.raises(ConflictError) as refused:
                await upstream.register(registration_of(particle_id))
            refusals[particle_id] = refused.value
    assert refusals[elsewhere].problem["particle"] == "invalid"
    assert "another product" in refusals[elsewhere].reason
    assert refusals[owned].problem["particle"] == "nonmember"
    assert refusals[protected].problem["particle"] == "protected"
    for refusal in refusals.values():
        assert refusal.status == 409 and "Particle product 12345" in refusal.reason
        assert "factory outbox retry" in refusal.reason


async def test_refusals_as_the_official_client_sees_them(cloud: TestServer) -> None:
    token = await member_token(cloud)
    outsider = await cloud.app[STORE].add_token("dev@example.com", "developer")

    def calls() -> dict[str, dict[str, Any]]:
        return {
            "bad token": referee(cloud, "0" * 40, "addDeviceToProduct", deviceId=DEVICE,
                                 product=str(PRODUCT_ID)),
            "not a member": referee(cloud, outsider, "addDeviceToProduct", deviceId=DEVICE,
                                    product=str(PRODUCT_ID)),
            "no product": referee(cloud, token, "addDeviceToProduct", deviceId=DEVICE,
                                  product="no-such-product"),
        }

    seen = await asyncio.to_thread(calls)
    assert seen["bad token"]["error"]["statusCode"] == 401
    assert seen["bad token"]["error"]["shortErrorDescription"] == \
        "The access token provided is invalid."
    assert seen["not a member"]["error"]["statusCode"] == 403
    assert seen["no product"]["error"]["statusCode"] == 404

    async with adapter(url_of(cloud), "0" * 40) as upstream:
        with pytest.raises(PermanentError) as bad_token:
            await upstream.register(registration_of())
    async with adapter(url_of(cloud), outsider) as upstream:
        with pytest.raises(PermanentError) as outside:
            await upstream.register(registration_of())
    async with adapter(url_of(cloud), token, "no-such-product") as upstream:
        with pytest.raises(PermanentError) as missing:
            await upstream.register(registration_of())
    assert bad_token.value.status == 401 and "token_file" in bad_token.value.reason
    assert "The access token provided is invalid." in bad_token.value.reason
    assert outside.value.status == 403 and "team member" in outside.value.reason
    assert missing.value.status == 404 and "particle_products" in missing.value.reason
    assert "adding device" in missing.value.reason


async def test_claim_codes_are_for_a_products_customers(cloud: TestServer) -> None:
    token = await member_token(cloud)
    customer = await cloud.app[STORE].add_token("buyer@example.com", "customer", (PRODUCT_ID,))

    def calls() -> tuple[dict[str, Any], dict[str, Any]]:
        return (referee(cloud, customer, "getClaimCode", product=str(PRODUCT_ID)),
                referee(cloud, token, "getClaimCode", product=str(PRODUCT_ID)))

    made, refused = await asyncio.to_thread(calls)
    assert made["statusCode"] == 200 and len(made["body"]["claim_code"]) == 63
    assert made["body"]["device_ids"] == []
    assert refused["error"]["statusCode"] == 403


# --- errors, answered on cue ------------------------------------------------------------


@contextlib.asynccontextmanager
async def answering(status: int, body: Any, headers: dict[str, str] | None = None,
                    ) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield url_of(server)
    finally:
        await server.close()


@pytest.mark.parametrize(("status", "headers", "retry_after"), [
    (429, {"Retry-After": "17"}, 17.0), (503, {}, None), (500, {"Retry-After": "2"}, 2.0)])
async def test_busy_and_broken_servers_are_retried(status: int, headers: dict[str, str],
                                                   retry_after: float | None) -> None:
    async with answering(status, {"ok": False, "error": "Too many requests"}, headers) as url, \
            adapter(url, "f" * 40) as upstream:
        with pytest.raises(RetryableError) as retry:
            await upstream.register(registration_of())
    assert retry.value.status == status and retry.value.retry_after == retry_after
    assert "Too many requests" in retry.value.reason and "adding device" in retry.value.reason


async def test_a_bad_request_keeps_particles_message() -> None:
    body = {"ok": False, "error": "Device ID is not valid", "info": "check the id"}
    async with answering(400, body) as url, adapter(url, "f" * 40) as upstream:
        with pytest.raises(PermanentError) as refused:
            await upstream.register(registration_of())
    assert refused.value.status == 400 and not isinstance(refused.value, ConflictError)
    assert "Device ID is not valid - check the id" in refused.value.reason


async def test_an_answer_without_the_device_is_retried_and_no_answer_too() -> None:
    async with answering(200, {"updated": 0, "updatedDeviceIds": []}) as url, \
            adapter(url, "f" * 40) as upstream:
        with pytest.raises(RetryableError, match="does not list the device"):
            await upstream.register(registration_of())
    async with adapter("http://127.0.0.1:9", "f" * 40) as upstream:
        with pytest.raises(RetryableError):
            await upstream.register(registration_of())


async def test_a_unit_without_a_device_id_needs_a_person() -> None:
    async with adapter("http://127.0.0.1:9", "f" * 40) as upstream:
        with pytest.raises(PermanentError) as refused:
            await upstream.register(registration_of("7CDFA100033B"))
        with pytest.raises(PermanentError, match="cannot pre-claim"):
            await upstream.preclaim(new_uci(), "acme", "csr")
    assert refused.value.status == 400 and "not a Particle device ID" in refused.value.reason


# --- config -----------------------------------------------------------------------------


def particle_config(folder: Path, upstream: str, products: str = "") -> Path:
    """The test station without its pre-claimed product, with `upstream` as [upstream]."""
    text = CONFIG_TEXT.split("[[products]]")
    return write_config(folder, text[0] + "[[products]]" + text[1] + products +
                        "\n[upstream]\n" + upstream)


GOOD = f'kind = "particle"\ntoken_file = "p.token"\n[upstream.particle_products]\n' \
       f'"{PRODUCT}" = {PRODUCT_ID}\n'


@pytest.mark.parametrize(("upstream", "key", "reason"), [
    ('kind = "particle"\ntoken_file = "t"\n', "particle_products", "required"),
    ('kind = "particle"\n[upstream.particle_products]\n"x" = 1\n', "token_file", "required"),
    ('kind = "particle"\ntoken_file = "t"\n[upstream.particle_products]\n"other" = 1\n',
     f"particle_products.{PRODUCT}", "missing"),
    (f'kind = "particle"\ntoken_file = "t"\n[upstream.particle_products]\n"{PRODUCT}" = '
     f'"Air Sensor"\n', f"particle_products.{PRODUCT}", "slug"),
    (GOOD.replace('token_file = "p.token"', 'token_file = "t"\nurl = "http://x/v1"'),
     "url", "host"),
    (GOOD.replace('token_file = "p.token"', 'token_file = "t"\nlogin_file = "l"'),
     "login_file", "thingsboard"),
    ('kind = "http"\nurl = "http://r:1"\ntoken_file = "a"\n[upstream.particle_products]\n',
     "particle_products", "particle"),
])
def test_bad_particle_settings_name_the_key(tmp_path: Path, upstream: str, key: str,
                                            reason: str) -> None:
    with pytest.raises(ConfigError) as bad:
        load(particle_config(tmp_path, upstream))
    assert bad.value.key == f"upstream.{key}" and reason in bad.value.reason


def test_pre_claimed_products_and_claim_secrets_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pre-claimed"):
        load(write_config(tmp_path, CONFIG_TEXT + "\n[upstream]\n" + GOOD))
    secret = particle_config(tmp_path, GOOD).read_text().replace(
        'model = "AQ-100"', 'model = "AQ-100"\nclaim_secret_days = 30')
    with pytest.raises(ConfigError, match="claim secret"):
        load(write_config(tmp_path, secret))


def test_particle_settings_are_read(tmp_path: Path) -> None:
    config = load(particle_config(tmp_path, GOOD))
    assert config.upstream.url == "https://api.particle.io"
    assert config.upstream.token_file == tmp_path / "p.token"
    assert config.upstream.particle_products == {PRODUCT: str(PRODUCT_ID)}


# --- end to end: the station's unit, imported through the builder and the outbox --------


async def provision(config: Any, hardware_id: str) -> tuple[str, Any]:
    journal = await open_journal(config.journal, config.station_id)
    product = config.product(PRODUCT)
    assert product is not None
    run = await Pipeline(journal, [Identify(), Issue(), Write(), Verify(registration)]).provision(
        UnitRun("f1", product, "config/device.json5"), MemoryUnit(hardware_id=hardware_id))
    assert run.uci is not None
    return run.uci, journal


async def test_a_station_unit_is_imported_into_its_product(tmp_path: Path,
                                                           cloud: TestServer) -> None:
    (tmp_path / "p.token").write_text(await member_token(cloud) + "\n")
    config = load(particle_config(tmp_path, GOOD.replace(
        'kind = "particle"', f'kind = "particle"\nurl = "{url_of(cloud)}"')))
    elsewhere = "d" * 24
    await cloud.app[STORE].put_device(elsewhere, product_id=OTHER_ID)
    uci, journal = await provision(config, DEVICE.upper())
    other_uci, second = await provision(config, elsewhere)
    await second.close()  # a journal left open keeps its threads, and pytest, from exiting
    try:
        async with contextlib.AsyncExitStack() as stack:
            worker = OutboxWorker(journal, await upstream_client(config, stack))
            assert await worker.drain_once() == 2
            # The same unit's registration sent again (a crash before the answer was
            # journaled): Particle already has it, which is success.
            particle = await upstream_client(config, stack)
            unit = await journal.unit(uci)
            again = await particle.register(registration_of(
                unit.hardware_id or "", uci=uci))
        registered = unit.last("registered")
        failed = (await journal.unit(other_uci)).last("register_failed")
    finally:
        await journal.close()
    assert registered is not None and registered.data["created"] is True
    assert not again.created
    assert failed is not None and "another product" in failed.data["reason"]
    seen = await asyncio.to_thread(referee, cloud, (tmp_path / "p.token").read_text().strip(),
                                   "getDevice", deviceId=DEVICE, product=SLUG)
    assert seen["body"]["product_id"] == PRODUCT_ID


def test_sim_cloud_makes_tokens_the_simulation_accepts(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    db, token_file = tmp_path / "particle.db", tmp_path / "p.token"
    run_cli(None, "sim-cloud", "particle", "--db", str(db), "--product",
            f"{PRODUCT_ID}:{SLUG}", "--token-file", str(token_file))
    assert token_file.stat().st_mode & 0o777 == 0o600 and db.stat().st_mode & 0o777 == 0o600
    bad = run_cli(None, "sim-cloud", "particle", "--db", str(db), "--product", "x",
                  "--token-file", str(token_file), check=False)
    assert bad.returncode != 0 and "ID:SLUG" in bad.stderr

    async def check() -> None:
        server = TestServer(make_app(Settings(db=db)), host="127.0.0.1")
        await server.start_server()
        try:
            async with adapter(url_of(server), token_file.read_text().strip()) as upstream:
                assert (await upstream.register(registration_of())).created
        finally:
            await server.close()

    asyncio.run(check())
