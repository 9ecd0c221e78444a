"""The `factory` command line, run as a real process over a real journal."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from factory import uci as uci_codec
from factory.tokens import token_hash
from tests.conftest import PRODUCT, run_cli

COMMANDS = [["serve"], ["issue"], ["units"], ["unit"], ["void"], ["token"], ["token", "new"],
            ["token", "list"], ["token", "revoke"], ["journal"], ["journal", "verify"],
            ["journal", "export"], ["config"], ["config", "check"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = run_cli(None, *command, "--help")
    assert result.stdout.startswith("usage: factory")
    assert len(result.stdout.splitlines()) >= 3


def test_tokens_are_shown_once_and_stored_hashed(config_path: Path) -> None:
    made = run_cli(config_path, "token", "new", "--role", "device", "--name", "fixture-1")
    token = made.stdout.strip()
    assert token.startswith("fst_") and len(token) > 40
    assert "shown only this once" in made.stderr
    with sqlite3.connect(config_path.parent / "journal.sqlite") as db:
        rows = db.execute("SELECT name, role, token_hash FROM tokens").fetchall()
        dump = "\n".join(db.iterdump())
    assert rows == [("fixture-1", "device", token_hash(token))]
    assert token not in dump

    listed = run_cli(config_path, "token", "list").stdout
    assert "fixture-1" in listed and "device" in listed and "active" in listed
    assert token not in listed

    dup = run_cli(config_path, "token", "new", "--role", "viewer", "--name", "fixture-1",
                  check=False)
    assert dup.returncode == 2 and "exists already" in dup.stderr

    run_cli(config_path, "token", "revoke", "fixture-1")
    assert "revoked" in run_cli(config_path, "token", "list").stdout
    again = run_cli(config_path, "token", "revoke", "fixture-1", check=False)
    assert again.returncode == 2 and "no active token" in again.stderr

    bad_role = run_cli(config_path, "token", "new", "--role", "root", "--name", "x",
                       check=False)
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr


def test_issue_units_unit_void(config_path: Path) -> None:
    one = json.loads(run_cli(config_path, "issue", "--product", PRODUCT, "--hardware-id",
                             "aa-bb-cc-dd-ee-ff", "--json").stdout)
    same = json.loads(run_cli(config_path, "issue", "--product", PRODUCT, "--hardware-id",
                              "AABB.CCDD.EEFF", "--json").stdout)
    assert one["created"] and not same["created"] and one["ucis"] == same["ucis"]
    uci = one["ucis"][0]

    batch = run_cli(config_path, "issue", "--product", PRODUCT, "--count", "3").stdout
    lines = batch.splitlines()
    assert len(lines) == 3
    for line in lines:
        human, canonical, *_ = line.split()
        assert uci_codec.parse(human) == canonical

    listed = run_cli(config_path, "units", "--limit", "10").stdout
    assert len(listed.splitlines()) == 4 and uci in listed

    shown = run_cli(config_path, "unit", uci_codec.human(uci).lower()).stdout
    assert uci in shown and "issued" in shown and "cli:" in shown

    run_cli(config_path, "void", uci, "--reason", "cracked housing")
    detail = json.loads(run_cli(config_path, "unit", uci, "--json").stdout)
    assert detail["state"] == "voided"
    assert detail["events"][-1]["data"] == {"reason": "cracked housing"}
    voided = json.loads(run_cli(config_path, "units", "--state", "voided", "--json").stdout)
    assert [u["uci"] for u in voided] == [uci]

    twice = run_cli(config_path, "void", uci, "--reason", "again", check=False)
    assert twice.returncode == 2 and "already voided" in twice.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["issue", "--product", "NOPE"], "'NOPE' is not a product"),
    (["issue", "--product", PRODUCT, "--count", "0"], "count: must be between 1 and 10000"),
    (["unit", "7KQ2-M9XD-3FHT-0W5R-X"], "wrong check symbol"),
    (["unit", "7KQ2M9XD3FHT0W5R"], "no unit with UCI 7KQ2M9XD3FHT0W5R"),
    (["void", "7KQ2M9XD3FHT0W5R", "--reason", " "], "--reason must say why"),
])
def test_errors_are_one_clear_line(config_path: Path, args: list[str], message: str) -> None:
    run_cli(config_path, "issue", "--product", PRODUCT)  # reading commands never make one
    result = run_cli(config_path, *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_no_config_says_how_to_give_one() -> None:
    result = run_cli(None, "units", check=False)
    assert result.returncode == 2
    assert "pass --config FILE or set FACTORY_CONFIG" in result.stderr


def test_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "factory"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                            check=True, timeout=30)
    assert "serve" in result.stdout and "journal" in result.stdout
