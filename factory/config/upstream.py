"""The [upstream] table: the device cloud units are registered with.

A new kind of cloud adds its name to `UpstreamKind`, its settings to `Upstream`, a parser here,
and registers the parser in `PARSERS` (its adapter registers in factory/upstream/kinds.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast, get_args

from factory.config.products import Product
from factory.config.table import Table, config_path, seconds

UpstreamKind = Literal["none", "http", "aws-iot", "thingsboard", "particle", "rainmaker"]
UPSTREAM_KINDS: tuple[UpstreamKind, ...] = get_args(UpstreamKind)


@dataclass(frozen=True)
class Upstream:
    """The device cloud units are registered with (kind "none": no registration)."""

    kind: UpstreamKind = "none"
    url: str = ""
    token_file: Path | None = None  # holds the product token; never the config itself
    concurrency: int = 4
    timeout: float = 10.0
    # The outbox's retries: full-jitter backoff from retry_base seconds doubling up to
    # retry_cap (a server's Retry-After wins when longer).
    retry_base: float = 1.0
    retry_cap: float = 300.0
    # aws-iot (docs/upstream-aws.md); credentials come from the standard AWS chain only.
    region: str = ""
    endpoint_url: str = ""  # e.g. a local emulator; empty: AWS's own endpoint
    profile: str = ""  # a profile name in ~/.aws (not a credential); empty: the default chain
    policy: str = ""  # the IoT policy attached to every pre-claimed certificate
    thing_group: str = ""  # every thing is added to it (made if missing); empty: none
    thing_types: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ca_file: Path | None = None  # PEM CA chain handed out with certificates (AmazonRootCA1)
    # thingsboard (docs/upstream-thingsboard.md): the tenant's login or API key, from a file.
    login_file: Path | None = None  # JSON {"username": ..., "password": ...}
    api_key_file: Path | None = None  # a ThingsBoard API key (servers that have them)
    device_profiles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # particle (docs/upstream-particle.md): station product id -> Particle product id or slug;
    # the access token is in token_file.
    particle_products: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # rainmaker (host-driven claiming): the account's access token is in token_file; the
    # platform claimed as ("" = the chip esptool detects); the MQTT credentials host
    # written beside mqtt_host, as the CLI does for camera nodes ("" = none).
    platform: str = ""
    mqtt_cred_host: str = ""

    @property
    def enabled(self) -> bool:
        return self.kind != "none"


_CREDENTIAL_KEY = re.compile(r"access_key|secret|session_token|password|credential", re.I)
_AWS_KEYS = ("region", "endpoint_url", "profile", "policy", "thing_group", "thing_types",
             "ca_file")
_TB_KEYS = ("login_file", "api_key_file", "device_profiles")
_PARTICLE_KEYS = ("particle_products",)
_RAINMAKER_KEYS = ("platform", "mqtt_cred_host")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}\Z")
_AWS_NAME = re.compile(r"^[A-Za-z0-9:_-]{1,128}\Z")  # thing types and thing groups
_AWS_POLICY = re.compile(r"^[\w+=,.@-]{1,128}\Z", re.ASCII)


# Where each kind's credentials go instead: what a credential put in the config is told.
_CREDENTIALS_GO: Mapping[UpstreamKind, str] = MappingProxyType({
    "none": 'kind = "none" registers units nowhere and needs none; remove the key',
    "http": "put the registry's product token in a file (0600) and name it in "
            "upstream.token_file",
    "aws-iot": "give the station AWS credentials through the standard chain: "
               "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in its environment, a profile in "
               "~/.aws (upstream.profile or AWS_PROFILE), or the instance role",
    "thingsboard": "put the tenant's login in a JSON file (0600) of username and password "
                   "named in upstream.login_file, or an API key in a file named in "
                   "upstream.api_key_file",
    "particle": "put the Particle access token in a file (0600) and name it in "
                "upstream.token_file",
    "rainmaker": "put the RainMaker access token (esp-rainmaker-cli login; its accesstoken) "
                 "in a file (0600) and name it in upstream.token_file",
})


def where_credentials_go(kind: UpstreamKind) -> str:
    """What to do with `kind`'s credentials (told when they are refused, or misplaced)."""
    return _CREDENTIALS_GO[kind]


def read_upstream(table: Table, products: tuple[Product, ...]) -> Upstream:
    """The [upstream] table, read by its kind's parser; no kind takes credentials."""
    kind = table.get("kind", str, "none")
    if kind not in UPSTREAM_KINDS:
        kinds = f"{', '.join(UPSTREAM_KINDS[:-1])} or {UPSTREAM_KINDS[-1]}"
        raise table.error("kind", f"must be {kinds}, got {kind!r}")
    known = cast(UpstreamKind, kind)
    for key in table.data:
        if _CREDENTIAL_KEY.search(key):
            raise table.error(key, "credentials never go in the station config (it is copied, "
                                   f"printed and committed); {_CREDENTIALS_GO[known]}")
    return PARSERS[known](table, products)


def _none(table: Table, products: tuple[Product, ...]) -> Upstream:
    table.finish()
    return Upstream()


def _http(table: Table, products: tuple[Product, ...]) -> Upstream:
    _only_for(table, "http")
    url = table.get("url", str)
    if not re.match(r"^https?://[^\s/]+(/\S*)?\Z", url):
        raise table.error("url", f"must be an http(s) URL, got {url!r}")
    token_file = config_path(table.source, table.get("token_file", str))
    sending = _sending(table)
    table.finish()
    return Upstream(kind="http", url=url, token_file=token_file, **sending)


def _aws_iot(table: Table, products: tuple[Product, ...]) -> Upstream:
    for key in ("url", "token_file"):
        if key in table.data:
            raise table.error(key, 'is for kind = "http" only; AWS IoT is reached by region '
                                   '(and endpoint_url), with credentials from the AWS chain')
    _only_for(table, "aws-iot")
    region = table.get("region", str)
    if not _AWS_REGION.match(region):
        raise table.error("region", f"must be an AWS region such as eu-west-1, got {region!r}")
    endpoint_url = table.get("endpoint_url", str, "")
    if endpoint_url and not re.match(r"^https?://[^\s/]+/?\Z", endpoint_url):
        raise table.error("endpoint_url", f"must be http(s)://host[:port], got {endpoint_url!r}")
    profile = table.get("profile", str, "")
    policy = table.get("policy", str, "")
    if policy and not _AWS_POLICY.match(policy):
        raise table.error("policy", "must be an AWS IoT policy name (letters, digits, "
                                    f"'_+=,.@-', at most 128), got {policy!r}")
    preclaimed = [p.id for p in products if p.claim == "pre"]
    if preclaimed and not policy:
        raise table.error("policy", f"is required: product {preclaimed[0]} is pre-claimed, "
                                    "and its certificates need an AWS IoT policy")
    thing_group = table.get("thing_group", str, "")
    if thing_group and not _AWS_NAME.match(thing_group):
        raise table.error("thing_group", "must be letters, digits, ':', '_' or '-' (at most "
                                         f"128), got {thing_group!r}")
    types = table.table("thing_types")
    thing_types = {p.id: types.get(p.id, str, p.id) for p in products}
    for product, name in thing_types.items():
        if not _AWS_NAME.match(name):
            reason = (f"{name!r} is not a valid thing type name (letters, digits, ':', '_', "
                      f"'-'); set upstream.thing_types.\"{product}\" to one")
            raise types.error(product, reason) if product in types.data else \
                table.error("thing_types", reason)
    types.finish()
    ca_text = table.get("ca_file", str, "")
    sending = _sending(table)
    table.finish()
    return Upstream(kind="aws-iot", **sending, region=region,
                    endpoint_url=endpoint_url, profile=profile, policy=policy,
                    thing_group=thing_group, thing_types=MappingProxyType(thing_types),
                    ca_file=config_path(table.source, ca_text) if ca_text else None)


def _thingsboard(table: Table, products: tuple[Product, ...]) -> Upstream:
    _only_for(table, "thingsboard")
    if "token_file" in table.data:
        raise table.error("token_file", 'is for kind = "http"; ThingsBoard takes login_file '
                                        '(the tenant\'s username and password) or api_key_file')
    url = table.get("url", str)
    if not re.match(r"^https?://[^\s/?#]+/?\Z", url):
        raise table.error("url", f"must be the server's http(s)://host[:port], got {url!r}")
    preclaimed = [p.id for p in products if p.claim == "pre"]
    if preclaimed:
        raise table.error("kind", f"product {preclaimed[0]} is pre-claimed (claim = \"pre\"), "
                                  "which ThingsBoard cannot do: its devices are claimed by "
                                  "customers; make the product claim = \"user\"")
    login, api_key = table.get("login_file", str, ""), table.get("api_key_file", str, "")
    if bool(login) == bool(api_key):
        raise table.error("login_file", "give exactly one of login_file (a JSON file with the "
                                        "tenant's username and password) and api_key_file")
    profiles = table.table("device_profiles")
    names = {p.id: profiles.get(p.id, str, p.id) for p in products}
    for product, name in names.items():
        if not 0 < len(name) <= 255 or not name.isprintable() or name != name.strip():
            raise profiles.error(product, f"{name!r} is not a device profile name (1-255 "
                                          "printable characters, no surrounding spaces)")
    profiles.finish()
    sending = _sending(table)
    table.finish()
    return Upstream(kind="thingsboard", url=url.rstrip("/"), **sending,
                    login_file=config_path(table.source, login) if login else None,
                    api_key_file=config_path(table.source, api_key) if api_key else None,
                    device_profiles=MappingProxyType(names))


PARTICLE_URL = "https://api.particle.io"
_PARTICLE_PRODUCT = re.compile(r"^(?:[0-9]{1,10}|[a-z0-9][a-z0-9-]{0,127})\Z")


def _particle(table: Table, products: tuple[Product, ...]) -> Upstream:
    _only_for(table, "particle")
    url = table.get("url", str, PARTICLE_URL)
    if not re.match(r"^https?://[^\s/?#]+/?\Z", url):
        raise table.error("url", f"must be the API's http(s)://host[:port], got {url!r}")
    token_file = config_path(table.source, table.get("token_file", str))
    for product in products:
        if product.claim == "pre":
            raise table.error("kind", f"product {product.id} is pre-claimed (claim = \"pre\"), "
                                      "which Particle cannot do: its devices are claimed by "
                                      "their users with claim codes; make it claim = \"user\"")
        if product.claim_secret_days:
            raise table.error("kind", f"product {product.id} prints a claim secret "
                                      "(claim_secret_days), which Particle has no place for: "
                                      "its customers claim devices with claim codes made at "
                                      "setup; set claim_secret_days = 0")
    mapped = table.table("particle_products", required=True)
    names: dict[str, str] = {}
    for product in products:
        if product.id not in mapped.data:
            raise mapped.error(product.id, "is missing: every product needs its Particle "
                                           "product (its numeric id or its slug)")
        name = str(mapped.get(product.id, (int, str), what="a product id or slug"))
        if not _PARTICLE_PRODUCT.match(name):
            raise mapped.error(product.id, f"must be a Particle product id (digits) or slug "
                                           f"(lower-case letters, digits, '-'), got {name!r}")
        names[product.id] = name
    mapped.finish()
    sending = _sending(table)
    table.finish()
    return Upstream(kind="particle", url=url.rstrip("/"), token_file=token_file, **sending,
                    particle_products=MappingProxyType(names))


RAINMAKER_URL = "https://esp-claiming.rainmaker.espressif.com/"
RAINMAKER_PLATFORMS = ("esp32", "esp32s2", "esp32c3", "esp32s3", "esp32c2", "esp32c6",
                       "esp32h2")


def _rainmaker(table: Table, products: tuple[Product, ...]) -> Upstream:
    _only_for(table, "rainmaker")
    url = table.get("url", str, RAINMAKER_URL)
    if not re.match(r"^https?://[^\s/?#]+(/[^\s?#]*)?\Z", url):
        raise table.error("url", f"must be the claiming service's http(s) base URL, got "
                                 f"{url!r}")
    token_file = config_path(table.source, table.get("token_file", str))
    platform = table.get("platform", str, "")
    if platform and platform not in RAINMAKER_PLATFORMS:
        raise table.error("platform", f"must be one of {', '.join(RAINMAKER_PLATFORMS)} (or "
                                      f"empty: the chip esptool detects), got {platform!r}")
    cred_host = table.get("mqtt_cred_host", str, "")
    if cred_host and not re.match(r"^[A-Za-z0-9.-]{1,253}\Z", cred_host):
        raise table.error("mqtt_cred_host", f"must be a host name, got {cred_host!r}")
    for product in products:
        if product.claim != "pre":
            raise table.error("kind", f"product {product.id} is claim = \"user\", which "
                                      "RainMaker has no place for: its units get their node "
                                      "id and certificate by host-driven claiming on the "
                                      "line; make it claim = \"pre\"")
    sending = _sending(table)
    table.finish()
    return Upstream(kind="rainmaker", url=url if url.endswith("/") else url + "/",
                    token_file=token_file, **sending, platform=platform,
                    mqtt_cred_host=cred_host)


def _only_for(table: Table, kind: str) -> None:
    """Refuse another kind's keys, naming the kind they belong to."""
    for owner, keys in (("aws-iot", _AWS_KEYS), ("thingsboard", _TB_KEYS),
                        ("particle", _PARTICLE_KEYS), ("rainmaker", _RAINMAKER_KEYS)):
        for key in keys:
            if owner != kind and key in table.data:
                raise table.error(key, f'is for kind = "{owner}" only')


def _sending(table: Table) -> dict[str, Any]:
    """Any upstream's requests in flight at once, seconds before one is given up, and the
    retry schedule's first and longest wait (Upstream's fields of those names)."""
    concurrency = table.get("concurrency", int, 4)
    if not 1 <= concurrency <= 64:
        raise table.error("concurrency", f"must be 1 to 64, got {concurrency}")
    base = seconds(table, "retry_base", Upstream.retry_base)
    cap = seconds(table, "retry_cap", Upstream.retry_cap)
    if cap < base:
        raise table.error("retry_cap", f"must be at least retry_base ({base:g} s), got {cap:g}")
    return {"concurrency": concurrency, "timeout": seconds(table, "timeout", 10.0),
            "retry_base": base, "retry_cap": cap}


# Each kind's parser: the one place an upstream kind registers (tests/test_config.py checks
# that every UpstreamKind has one).
PARSERS: dict[UpstreamKind, Callable[[Table, tuple[Product, ...]], Upstream]] = {
    "none": _none, "http": _http, "aws-iot": _aws_iot, "thingsboard": _thingsboard,
    "particle": _particle, "rainmaker": _rainmaker,
}
