"""Building the configured upstream's adapter: the one place a new cloud registers (its
`[upstream] kind` and a builder that opens the adapter for a station config)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import aiohttp
from botocore.exceptions import ProfileNotFound

from factory import claim_secret
from factory.config import ConfigError, StationConfig
from factory.upstream.adapter import Upstream
from factory.upstream.aws import AwsIotUpstream, make_client
from factory.upstream.aws_certs import pem_blocks
from factory.upstream.http import HttpUpstream
from factory.upstream.particle import ParticleUpstream
from factory.upstream.particle_api import ParticleApi
from factory.upstream.rainmaker import RainmakerUpstream
from factory.upstream.thingsboard import ThingsBoardUpstream
from factory.upstream.thingsboard_api import ApiKey, Credentials, Login, ThingsBoardApi

Builder = Callable[[StationConfig, contextlib.AsyncExitStack], Awaitable[Upstream]]


async def upstream_client(config: StationConfig, stack: contextlib.AsyncExitStack) -> Upstream:
    """The configured upstream's adapter, open until `stack` closes."""
    build = BUILDERS.get(config.upstream.kind)
    if build is None:
        raise ConfigError(config.source, "upstream.kind", "no upstream is configured")
    return await build(config, stack)


async def http_upstream(config: StationConfig, stack: contextlib.AsyncExitStack) -> Upstream:
    """The http adapter: the product token from its file, one aiohttp session."""
    upstream = config.upstream
    assert upstream.token_file is not None
    try:
        token = upstream.token_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(config.source, "upstream.token_file",
                          f"cannot be read: {exc.strerror}") from exc
    session = await stack.enter_async_context(aiohttp.ClientSession())
    return HttpUpstream(session, upstream.url, token, timeout=upstream.timeout)


async def _aws(config: StationConfig, stack: contextlib.AsyncExitStack) -> Upstream:
    aws = aws_upstream(config)
    stack.callback(aws.close)
    return aws


def aws_upstream(config: StationConfig) -> AwsIotUpstream:
    """The aws-iot adapter for the config: credentials from the standard AWS chain."""
    upstream = config.upstream
    chain: tuple[str, ...] = ()
    if upstream.ca_file is not None:
        try:
            chain = tuple(pem_blocks(upstream.ca_file.read_text()))
        except OSError as exc:
            raise ConfigError(config.source, "upstream.ca_file",
                              f"cannot be read: {exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigError(config.source, "upstream.ca_file",
                              f"is not a PEM certificate bundle: {exc}") from exc
    try:
        client = make_client(upstream.region, endpoint_url=upstream.endpoint_url,
                             profile=upstream.profile, timeout=upstream.timeout,
                             pool=max(10, upstream.concurrency))
    except ProfileNotFound as exc:
        raise ConfigError(config.source, "upstream.profile", str(exc)) from exc
    return AwsIotUpstream(client, station=config.station_id, policy=upstream.policy,
                          thing_types=upstream.thing_types, thing_group=upstream.thing_group,
                          ca_chain=chain, workers=upstream.concurrency)


async def thingsboard_upstream(config: StationConfig,
                               stack: contextlib.AsyncExitStack) -> Upstream:
    """The thingsboard adapter: the tenant's login or API key from its file, one aiohttp
    session, and the station's claim secrets (ThingsBoard compares them in plain text)."""
    upstream = config.upstream
    credentials: Credentials
    key, path = (("upstream.login_file", upstream.login_file) if upstream.login_file
                 else ("upstream.api_key_file", upstream.api_key_file))
    assert path is not None
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(config.source, key, f"cannot be read: {exc.strerror}") from exc
    if upstream.login_file is not None:
        try:
            credentials = Login.from_json(text)
        except ValueError as exc:
            raise ConfigError(config.source, key, f"{path} {exc}") from exc
    elif not text or not text.isprintable():
        raise ConfigError(config.source, key, f"{path} must hold one API key")
    else:
        credentials = ApiKey(text)
    secrets = claim_secret.for_station(config)
    session = await stack.enter_async_context(aiohttp.ClientSession())
    api = ThingsBoardApi(session, upstream.url, credentials, timeout=upstream.timeout)
    return ThingsBoardUpstream(api, station=config.station_id,
                               device_profiles=upstream.device_profiles,
                               secret_for=None if secrets is None else secrets.secret)


def _token_from_file(config: StationConfig, holds: str) -> str:
    """The access token in `[upstream] token_file`: one printable word, or a ConfigError
    naming the file and key (the token itself is never shown)."""
    path = config.upstream.token_file
    assert path is not None
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(config.source, "upstream.token_file",
                          f"cannot be read: {exc.strerror}") from exc
    if not token or not token.isprintable() or " " in token:
        raise ConfigError(config.source, "upstream.token_file", f"{path} must hold {holds}")
    return token


async def particle_upstream(config: StationConfig,
                            stack: contextlib.AsyncExitStack) -> Upstream:
    """The particle adapter: the access token from its file, one aiohttp session."""
    upstream = config.upstream
    token = _token_from_file(config, "one Particle access token")
    session = await stack.enter_async_context(aiohttp.ClientSession())
    api = ParticleApi(session, upstream.url, token, timeout=upstream.timeout)
    return ParticleUpstream(api, products=upstream.particle_products)


async def rainmaker_upstream(config: StationConfig,
                             stack: contextlib.AsyncExitStack) -> Upstream:
    """The rainmaker adapter: the account's access token from its file (never logged), one
    aiohttp session."""
    upstream = config.upstream
    token = _token_from_file(
        config, "one RainMaker access token (esp-rainmaker-cli login; its accesstoken)")
    session = await stack.enter_async_context(aiohttp.ClientSession())
    return RainmakerUpstream(session, upstream.url, token, timeout=upstream.timeout)


BUILDERS: dict[str, Builder] = {"http": http_upstream, "aws-iot": _aws,
                                "thingsboard": thingsboard_upstream,
                                "particle": particle_upstream,
                                "rainmaker": rainmaker_upstream}
