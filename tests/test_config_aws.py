"""`[upstream] kind = "aws-iot"` in the station config: what it reads, what it refuses (naming
the file, the key and the reason), and that credentials never come from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.config import ConfigError, load
from tests.conftest import CONFIG_TEXT, OTHER_PRODUCT, PRODUCT, write_config

AWS = """
[upstream]
kind = "aws-iot"
region = "eu-west-1"
policy = "factory-units"
"""


def test_aws_iot_is_parsed(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG_TEXT + AWS + f"""
endpoint_url = "http://127.0.0.1:5000"
profile = "line-3"
thing_group = "line-3"
ca_file = "AmazonRootCA1.pem"
concurrency = 8
[upstream.thing_types]
"{PRODUCT}" = "acme-air-sensor"
""")
    upstream = load(path).upstream
    assert upstream.enabled and upstream.kind == "aws-iot"
    assert (upstream.region, upstream.endpoint_url, upstream.profile, upstream.policy,
            upstream.thing_group, upstream.concurrency) == (
        "eu-west-1", "http://127.0.0.1:5000", "line-3", "factory-units", "line-3", 8)
    assert dict(upstream.thing_types) == {PRODUCT: "acme-air-sensor",
                                          OTHER_PRODUCT: OTHER_PRODUCT}
    assert upstream.ca_file == tmp_path / "AmazonRootCA1.pem"
    assert upstream.token_file is None and upstream.url == ""


def test_the_defaults(tmp_path: Path) -> None:
    upstream = load(write_config(tmp_path, CONFIG_TEXT + AWS)).upstream
    assert (upstream.endpoint_url, upstream.profile, upstream.thing_group, upstream.ca_file,
            upstream.timeout) == ("", "", "", None, 10.0)


BAD = [
    (AWS + 'aws_secret_access_key = "wJalrXUtnFEMI"\n', "upstream.aws_secret_access_key",
     "credentials never go in the station config"),
    (AWS + 'access_key_id = "AKIA"\n', "upstream.access_key_id", "standard chain"),
    (AWS + 'session_token = "x"\n', "upstream.session_token", "AWS_ACCESS_KEY_ID"),
    (AWS.replace('region = "eu-west-1"\n', ""), "upstream.region", "is required"),
    (AWS.replace("eu-west-1", "Ireland"), "upstream.region", "AWS region such as eu-west-1"),
    (AWS.replace('policy = "factory-units"\n', ""), "upstream.policy",
     f"product {OTHER_PRODUCT} is pre-claimed"),
    (AWS.replace("factory-units", "two words"), "upstream.policy", "AWS IoT policy name"),
    (AWS + 'url = "https://registry.example/"\n', "upstream.url", 'kind = "http" only'),
    (AWS + 'token_file = "token"\n', "upstream.token_file", 'kind = "http" only'),
    (AWS + 'endpoint_url = "localhost:5000"\n', "upstream.endpoint_url", "http(s)://host"),
    (AWS + 'thing_group = "line 3"\n', "upstream.thing_group", "letters, digits"),
    (AWS + f'[upstream.thing_types]\n"{PRODUCT}" = "acme.sensor"\n',
     f"upstream.thing_types.{PRODUCT}", "not a valid thing type name"),
    (AWS + '[upstream.thing_types]\nunknown = "x"\n', "upstream.thing_types.unknown",
     "not a known setting"),
    (AWS + "regoin = 1\n", "upstream.regoin", "not a known setting"),
    (AWS.replace("aws-iot", "aws"), "upstream.kind", "must be none, http, aws-iot, "),
    ('[upstream]\nkind = "http"\nurl = "http://r.example/"\ntoken_file = "t"\n'
     'region = "eu-west-1"\n', "upstream.region", 'kind = "aws-iot" only'),
]


@pytest.mark.parametrize(("extra", "key", "reason"), BAD)
def test_bad_aws_config_names_file_key_and_reason(tmp_path: Path, extra: str, key: str,
                                                  reason: str) -> None:
    path = write_config(tmp_path, CONFIG_TEXT + extra)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.source, info.value.key) == (str(path), key)
    assert reason in info.value.reason


def test_a_product_id_that_is_no_thing_type_needs_a_mapping(tmp_path: Path) -> None:
    text = CONFIG_TEXT.replace(f'id = "{PRODUCT}"', 'id = "acme.sensor"') + AWS
    with pytest.raises(ConfigError) as info:
        load(write_config(tmp_path, text))
    assert info.value.key == "upstream.thing_types"
    assert 'set upstream.thing_types."acme.sensor"' in info.value.reason
    mapped = load(write_config(tmp_path, text + '[upstream.thing_types]\n'
                                              '"acme.sensor" = "acme-sensor"\n'))
    assert mapped.upstream.thing_types["acme.sensor"] == "acme-sensor"
