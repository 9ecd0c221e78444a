"""A whole line, for real: the reference registry and the station as processes (debug
logging, access log on), two simulated console units on pseudo-terminals (a pre-claimed
product whose key the station makes, a product with claim secrets on its label), a batch
pre-claim run, and the API used with tokens of every role. Then every log and database the
line wrote, the journal's -wal and -shm included, is searched for every secret it handled:
none may be there."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import json5
import pytest

from factory import certs, claim_secret
from tests.conftest import FACTORY, OTHER_PRODUCT, PRODUCT, ROOT, run_cli, write_config

pytestmark = pytest.mark.slow
ACCOUNT = "acme-retail"
DEVICE = "config/device.json5"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


async def spawn(log: Path, *args: str) -> asyncio.subprocess.Process:
    """A `factory` process in a session of its own, everything it says into `log`."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *FACTORY, *args, env=ENV, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            start_new_session=True)


async def wait_for(log: Path, pattern: str, proc: asyncio.subprocess.Process) -> re.Match[str]:
    async with asyncio.timeout(30):
        while not (found := re.search(pattern, log.read_text(errors="replace"))):
            assert proc.returncode is None, log.read_text()
            await asyncio.sleep(0.05)
    return found


@contextlib.asynccontextmanager
async def running(log: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await spawn(log, *args)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def station_config(folder: Path, registry_url: str) -> Path:
    fixtures = "".join(f"""
[[fixtures]]
name = "{name}"
port = "{name}.tty"
driver = "console"
product = "{product}"
poll_interval = 0.2

[fixtures.console]
identify_command = "cat sys/class/net/eth0/address"
""" for name, product in (("secret-1", PRODUCT), ("pre-1", OTHER_PRODUCT)))
    return write_config(folder, f"""
[station]
id = "security-line"
listen = "127.0.0.1:0"
journal = "journal.sqlite"
labels = "{ROOT / 'labels'}"

[printer]
queue = "none"
keep = "kept-labels"

[upstream]
kind = "http"
url = "{registry_url}"
token_file = "upstream.token"

[[products]]
id = "{PRODUCT}"
name = "Acme Air Sensor"
model = "AQ-100"
label = "thermal-50x30-secret"
qr = "https://claim.example.com/c/{{uci}}"
claim = "user"
claim_secret_days = 30

[[products]]
id = "{OTHER_PRODUCT}"
name = "Acme Hub"
claim = "pre"
account = "{ACCOUNT}"
""" + fixtures)


def key_forms(pem: bytes) -> dict[str, bytes]:
    """A private key as it could leak: its PEM lines (the base64 body) and its DER bytes."""
    lines = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
    forms = {f"key line {n}": line for n, line in enumerate(lines) if len(line) >= 16}
    forms["key DER"] = base64.b64decode(b"".join(lines))
    return forms


def unit_state(config: Path, uci: str) -> list[str]:
    return [e["kind"] for e in
            json.loads(run_cli(config, "unit", uci, "--json").stdout)["events"]]


async def until_done(config: Path, root: Path, last: str) -> str:
    """The UCI of the unit at `root`, once its journal shows `last`."""
    async with asyncio.timeout(60):
        while not (root / DEVICE).exists():
            await asyncio.sleep(0.1)
        uci = str(json5.loads((root / DEVICE).read_text())["id"])
        while last not in unit_state(config, uci):
            await asyncio.sleep(0.3)
    return uci


async def use_the_api(url: str, tokens: dict[str, str]) -> list[str]:
    """Issue, read, void, open the status page by ?token=, and knock with bad tokens."""
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}
    seen = []
    # unsafe: keep the status page's cookie although the station is an IP address
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(f"{url}/api/v1/ucis", json={"product": PRODUCT},
                             headers=bearer(tokens["device"])) as r:
            assert r.status == 201
            uci = (await r.json())["uci"]
        calls = [("GET", "/api/v1/units", tokens["viewer"]),
                 ("GET", f"/api/v1/units/{uci}", tokens["operator"]),
                 ("GET", "/api/v1/outbox", tokens["viewer"]),
                 ("GET", "/api/v1/status", tokens["operator"]),
                 ("POST", f"/api/v1/units/{uci}/void", tokens["operator"]),
                 ("GET", "/api/v1/units", tokens["never issued"]),
                 ("GET", "/api/v1/units", tokens["revoked"]),
                 ("GET", "/api/v1/units", tokens["upstream"])]
        for method, path, token in calls:
            async with http.request(method, url + path, headers=bearer(token),
                                    json={"reason": "security test"}) as r:
                seen.append(f"{method} {path} {r.status}")
        # A token in an address: the status page's, and one sent where it means nothing.
        for path in (f"/?token={tokens['viewer']}", f"/api/v1/units?token={tokens['operator']}",
                     f"/?token={tokens['never issued']}"):
            async with http.get(url + path, allow_redirects=True) as r:
                seen.append(f"GET {path.split('?')[0]}?token= {r.status}")
    return seen


async def test_no_secret_reaches_a_log_or_a_database(tmp_path: Path) -> None:
    registry_db, registry_log = tmp_path / "registry.sqlite", tmp_path / "registry.log"
    station_log = tmp_path / "station.log"
    secrets: dict[str, bytes] = {}

    def registry_token(kind: str, name: str) -> str:
        token = subprocess.run([*FACTORY, "registry", "token", "--db", str(registry_db),
                                "--kind", kind, "--name", name], env=ENV, check=True,
                               capture_output=True, text=True, timeout=60).stdout.strip()
        secrets[f"registry {kind} token {name}"] = token.encode()
        return token

    (tmp_path / "upstream.token").write_text(registry_token("product", "line-1") + "\n")
    (tmp_path / "upstream.token").chmod(0o600)
    secrets["upstream token"] = (tmp_path / "upstream.token").read_text().strip().encode()
    registry_token("account", ACCOUNT)

    async with running(registry_log, "-v", "registry", "serve", "--db", str(registry_db),
                       "--listen", "127.0.0.1:0") as registry:
        found = await wait_for(registry_log, r"registry listening on (http://[\d.]+:\d+)/",
                               registry)
        config = station_config(tmp_path, found[1])
        tokens = {"never issued": "fst_" + "N0tIssued" * 5,
                  "upstream": secrets["upstream token"].decode()}
        for role in ("device", "operator", "viewer"):
            tokens[role] = run_cli(config, "token", "new", "--role", role, "--name",
                                   f"sec-{role}").stdout.strip()
        tokens["revoked"] = run_cli(config, "token", "new", "--role", "operator", "--name",
                                    "sec-revoked").stdout.strip()
        run_cli(config, "token", "revoke", "sec-revoked")
        secrets.update({f"API token {k}": v.encode() for k, v in tokens.items()})

        # A batch pre-claim run first (the station is not running yet): its keys on disk.
        batch = tmp_path / "batch"
        out = run_cli(config, "preclaim", "--product", OTHER_PRODUCT, "--account", ACCOUNT,
                      "--count", "3", "--out", str(batch), "--no-progress")
        batch_log = tmp_path / "preclaim.log"
        batch_log.write_text(out.stdout + out.stderr)
        batch_keys = sorted(batch.glob("*.key"))
        assert len(batch_keys) == 3
        for key_file in batch_keys:
            secrets.update({f"batch {key_file.stem} {k}": v
                            for k, v in key_forms(key_file.read_bytes()).items()})

        async with contextlib.AsyncExitStack() as stack:
            for name, mac, extra in (("secret-1", "02:00:00:00:0a:01", ()),
                                     ("pre-1", "02:00:00:00:0a:02", ("--no-keygen",))):
                sim_log = tmp_path / f"{name}.sim.log"
                sim = await stack.enter_async_context(running(
                    sim_log, "sim-unit", "--driver", "console", "--root",
                    str(tmp_path / name), "--link", str(tmp_path / f"{name}.tty"),
                    "--hardware-id", mac, "--baud", "0", *extra))
                await wait_for(sim_log, r"/dev/pts/", sim)
            station = await stack.enter_async_context(
                running(station_log, "-v", "-c", str(config), "serve"))
            listening = await wait_for(station_log, r"listening on (http://[\d.]+:\d+)/",
                                       station)
            answers = await use_the_api(listening[1], tokens)
            assert answers == [
                "GET /api/v1/units 200", f"GET /api/v1/units/{answers[1].split('/')[-1]}",
                "GET /api/v1/outbox 200", "GET /api/v1/status 200",
                f"POST /api/v1/units/{answers[4].split('/')[-2]}/void 200",
                "GET /api/v1/units 401", "GET /api/v1/units 401", "GET /api/v1/units 401",
                "GET /?token= 200", "GET /api/v1/units?token= 401", "GET /?token= 401"], answers
            user_uci = await until_done(config, tmp_path / "secret-1", "registered")
            pre_uci = await until_done(config, tmp_path / "pre-1", "certificate_written")
            assert "labelled" in unit_state(config, user_uci)

            # The unit's key (made by the station, written to the unit: no openssl there).
            key = (tmp_path / "pre-1" / "config" / "device.key").read_bytes()
            assert b"PRIVATE KEY" in key
            certs.load_key(key)
            secrets.update({f"unit key {k}": v for k, v in key_forms(key).items()})
            # The claim secret printed on the label, as the label shows it.
            claim_key = claim_secret.key_path(tmp_path / "journal.sqlite")
            printed = claim_secret.ClaimSecrets.open(claim_key).secret(user_uci)
            pdf = tmp_path / "kept-labels" / f"{user_uci}-1.pdf"
            shown = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                                   text=True, check=True, timeout=30).stdout
            assert printed in shown, shown
            secrets.update({"claim secret": printed.encode(),
                            "claim secret, no dashes": printed.replace("-", "").encode(),
                            "claim key": claim_key.read_bytes(),
                            "claim key hex": claim_key.read_bytes().hex().encode()})

            # While the line runs: the journal's -wal and -shm hold its recent writes.
            live = {p.name: p.read_bytes() for p in tmp_path.glob("*.sqlite*")}
            assert {"journal.sqlite-wal", "registry.sqlite-wal"} <= live.keys()
    registry_down = registry.returncode == 0

    searched = {**live, **{p.name + " (after stop)": p.read_bytes()
                           for p in tmp_path.glob("*.sqlite*")}}
    for log in (station_log, registry_log, batch_log, *tmp_path.glob("*.sim.log")):
        searched[log.name] = log.read_bytes()
    assert b"GET /api/v1/units" in searched["station.log"]  # the access log was on
    leaks = [f"{what} in {where}" for where, data in searched.items()
             for what, secret in secrets.items() if secret in data]
    assert not leaks, "\n".join(leaks)
    assert len(secrets) >= 25 and len(searched) >= 10, (secrets.keys(), searched.keys())
    assert pre_uci and registry_down
    print(f"searched {len(searched)} files for {len(secrets)} secrets: "
          f"{', '.join(sorted(searched))}")
