"""The rainmaker upstream against the simulated claiming service over real HTTP: node ids per
MAC, certificates from CSRs, and each refusal classified into the outbox's errors with an
action (the RainMaker CLI itself referees the simulation in tests/test_rainmaker_cli.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from factory import certs
from factory.config import ConfigError, load
from factory.station import unit_steps
from factory.upstream.adapter import PermanentError, RetryableError
from factory.upstream.kinds import upstream_client
from factory.upstream.outbox import OutboxWorker
from factory.upstream.rainmaker import RainmakerUpstream

from .aws_iot import free_port
from .rainmaker_cloud import Cloud, rainmaker_cloud

MAC = "7CDFA100033B"


@pytest.fixture
async def cloud(tmp_path) -> AsyncIterator[Cloud]:
    async with rainmaker_cloud(tmp_path / "cloud", quota=2) as found:
        yield found


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def service(session: aiohttp.ClientSession, cloud: Cloud, token: str = "") -> RainmakerUpstream:
    return RainmakerUpstream(session, cloud.url, token or cloud.token, timeout=5)


async def test_the_same_mac_gets_the_same_node_id_and_a_csr_its_certificate(cloud, session):
    rainmaker = service(session, cloud)
    node_id = await rainmaker.node_id(MAC, "esp32c3")
    assert await rainmaker.node_id(MAC, "esp32c3") == node_id
    assert await rainmaker.node_id("7CDFA100033C", "esp32c3") != node_id
    assert await cloud.nodes() == {MAC: node_id, "7CDFA100033C": await rainmaker.node_id(
        "7CDFA100033C", "esp32c3")}
    made = certs.key_and_csr(node_id)
    got = await rainmaker.certify(node_id, made.csr_pem)
    cert = x509.load_pem_x509_certificate(got.certificate_pem.encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node_id
    assert certs.certificate_key_id(got.certificate_pem) == made.spki_sha256
    assert got.mqtt_host.endswith(".amazonaws.com")
    assert cloud.token not in repr(rainmaker)


async def test_quota_exhausted_is_a_refusal_that_says_what_to_do(cloud, session):
    rainmaker = service(session, cloud)
    for mac in ("7CDFA1000001", "7CDFA1000002"):  # quota 2: both fit, and again
        node_id = await rainmaker.node_id(mac, "esp32")
        await rainmaker.certify(node_id, certs.key_and_csr(node_id).csr_pem)
        await rainmaker.certify(node_id, certs.key_and_csr(node_id).csr_pem)  # no new quota
    third = await rainmaker.node_id("7CDFA1000003", "esp32")
    with pytest.raises(PermanentError) as caught:
        await rainmaker.certify(third, certs.key_and_csr(third).csr_pem)
    assert caught.value.status == 400
    assert "User does not have available quota" in caught.value.reason
    assert "esp-rainmaker-admin@espressif.com" in caught.value.reason


@pytest.mark.parametrize(("mac", "platform", "words"), [
    ("7c:df:a1:00:03:3b", "esp32c3", "check the chip and its eFuse MAC"),
    (MAC, "esp8266", "set [upstream] platform"),
])
async def test_a_bad_mac_or_platform_is_refused_for_good(cloud, session, mac, platform, words):
    with pytest.raises(PermanentError, match="400") as caught:
        await service(session, cloud).node_id(mac, platform)
    assert words in caught.value.reason


async def test_a_bad_token_is_refused_with_what_to_do(cloud, session):
    with pytest.raises(PermanentError) as caught:
        await service(session, cloud, "not.a-token").node_id(MAC, "esp32c3")
    assert caught.value.status == 401
    assert "Unauthorized" in caught.value.reason and "[upstream] token_file" in caught.value.reason


async def test_5xx_and_throttling_are_worth_retrying(cloud, session):
    rainmaker = service(session, cloud)
    cloud.faults.unavailable = 1
    with pytest.raises(RetryableError) as down:
        await rainmaker.node_id(MAC, "esp32c3")
    assert down.value.status == 503
    cloud.faults.throttle, cloud.faults.retry_after = 1, 7
    with pytest.raises(RetryableError) as throttled:
        await rainmaker.node_id(MAC, "esp32c3")
    assert throttled.value.status == 429 and throttled.value.retry_after == 7
    assert "throttled" in throttled.value.reason
    assert await rainmaker.node_id(MAC, "esp32c3")  # and then it answers


async def test_nothing_listening_is_worth_retrying(session):
    rainmaker = RainmakerUpstream(session, f"http://127.0.0.1:{free_port()}/", "t", timeout=5)
    with pytest.raises(RetryableError) as caught:
        await rainmaker.node_id(MAC, "esp32c3")
    assert caught.value.status is None


CONFIG = """
[station]
id = "s1"
journal = "j.db"
[[products]]
id = "air"
name = "Air"
claim = "%s"
%s
[upstream]
kind = "rainmaker"
token_file = "rainmaker.token"
platform = "esp32c3"
"""


def test_the_config_takes_a_token_file_and_refuses_user_claimed_products(tmp_path):
    base = CONFIG
    path = tmp_path / "station.toml"
    path.write_text(base % ("pre", 'account = "maker@example.com"'))
    upstream = load(path).upstream
    assert upstream.kind == "rainmaker" and upstream.platform == "esp32c3"
    assert upstream.url == "https://esp-claiming.rainmaker.espressif.com/"
    assert upstream.token_file == tmp_path / "rainmaker.token"
    path.write_text(base % ("user", ""))
    with pytest.raises(ConfigError, match='make it claim = "pre"'):
        load(path)


def rainmaker_config(tmp_path: Path, url: str, token: str) -> Path:
    (tmp_path / "rainmaker.token").write_text(token + "\n")
    path = tmp_path / "station.toml"
    path.write_text(CONFIG.replace('kind = "rainmaker"', f'kind = "rainmaker"\nurl = "{url}"')
                    % ("pre", 'account = "maker@example.com"'))
    return path


async def test_the_station_builds_the_adapter_and_claims_before_writing(tmp_path, cloud,
                                                                       sqlite_journal):
    config = load(rainmaker_config(tmp_path, cloud.url, cloud.token))
    product = config.product("air")
    assert product is not None
    async with contextlib.AsyncExitStack() as stack:
        client = await upstream_client(config, stack)
        assert isinstance(client, RainmakerUpstream)
        assert await client.node_id(MAC, config.upstream.platform)
        worker = OutboxWorker(sqlite_journal, client)
        steps = unit_steps(product, cast(Any, None), worker, config.upstream)
    assert [step.name for step in steps] == [
        "identifying", "issuing", "claiming", "writing", "verifying", "labelling"]
    (tmp_path / "rainmaker.token").write_text("\n")
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(ConfigError, match="must hold one RainMaker access token"):
            await upstream_client(config, stack)


def test_sim_cloud_makes_tokens_and_a_batch_run_is_refused(tmp_path):
    from tests.conftest import run_cli

    db, token_file = tmp_path / "rainmaker.db", tmp_path / "rainmaker.token"
    run_cli(None, "sim-cloud", "rainmaker", "--db", str(db), "--user",
            "maker@example.com:Passw0rd!", "--token-file", str(token_file))
    assert token_file.stat().st_mode & 0o777 == 0o600 and db.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().count(".") == 2  # JWT-shaped, as the CLI reads them
    bad = run_cli(None, "sim-cloud", "rainmaker", "--db", str(db), "--user", "nopassword",
                  check=False)
    assert bad.returncode != 0 and "EMAIL:PASSWORD" in bad.stderr
    config = rainmaker_config(tmp_path, "http://127.0.0.1:9/", "t")
    refused = run_cli(config, "preclaim", "--product", "air", "--account", "a", "--count", "1",
                      "--out",
                      str(tmp_path / "run"), check=False)
    assert refused.returncode != 0 and "claimed on the line" in refused.stderr
