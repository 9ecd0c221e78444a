"""A credential written into `[upstream]` is refused, and the refusal says where that kind of
upstream takes its credentials from (not AWS's chain for every kind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.config import UPSTREAM_KINDS, ConfigError, load
from tests.conftest import CONFIG_TEXT, run_cli, write_config

# What each kind's refusal must name, and what it must not (another kind's place).
WHERE = {
    "none": ('kind = "none" registers units nowhere', "upstream.token_file"),
    "http": ("product token in a file (0600) and name it in upstream.token_file", "AWS"),
    "aws-iot": ("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "token_file"),
    "thingsboard": ("upstream.login_file, or an API key in a file named in "
                    "upstream.api_key_file", "AWS"),
    "particle": ("Particle access token in a file (0600) and name it in upstream.token_file",
                 "AWS"),
    "rainmaker": ("RainMaker access token (esp-rainmaker-cli login; its accesstoken)", "AWS"),
}


def test_every_kind_says_where_its_credentials_go() -> None:
    assert set(WHERE) == set(UPSTREAM_KINDS)


@pytest.mark.parametrize("kind", UPSTREAM_KINDS)
def test_a_credential_in_the_config_is_refused_naming_the_kinds_own_place(
        tmp_path: Path, kind: str) -> None:
    path = write_config(tmp_path, CONFIG_TEXT + f'[upstream]\nkind = "{kind}"\n'
                                                'password = "hunter2"\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    named, not_named = WHERE[kind]
    assert "upstream.password" in message
    assert "credentials never go in the station config" in message
    assert named in message
    assert not_named not in message
    assert "hunter2" not in message


def test_config_check_says_it_in_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG_TEXT + '[upstream]\nkind = "thingsboard"\n'
                                                'url = "http://127.0.0.1:9/"\n'
                                                'secret = "tenant"\n')
    result = run_cli(None, "config", "check", str(path), check=False)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "upstream.secret" in result.stderr and "upstream.login_file" in result.stderr
    assert "AWS" not in result.stderr
