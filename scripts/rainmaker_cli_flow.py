"""The RainMaker CLI's own per-board flow (seed 000: read the MAC, claim, build the NVS
image, flash it), one board at a time as it works, against the simulated ESP chip
(`factory sim-unit --driver esptool`) and the simulated claiming service (`factory sim-cloud
rainmaker`), timed: the peer baseline of the ESP benchmark, and the referee of the simulated
service in tests/test_rainmaker_cli.py. Importable; run alone it times a few boards:

    .venv/bin/python scripts/rainmaker_cli_flow.py [--boards N] [--baud 115200]

The CLI is `esp-rainmaker-cli` from its own venv (tests/rainmaker_cli/.venv, made by
scripts/test: it pins cryptography below the station's). It is used through its public
commands only: `profile add`, `profile switch`, `login` (the simulated service answers its
login2), `claim PORT --platform P --mac M --addr A`. Two things are not the CLI's own:
  - its claiming base URL is set in its custom profile (`claim_base_url`, the key its built-in
    profiles carry), since `profile add` takes only the API's URL;
  - the MAC is read with `esptool read-mac` and passed as --mac: the CLI's own read parses
    esptool's `chip_id` output by "MAC: ", which esptool 5 (what pip installs with it) aligns
    with extra spaces, so the CLI would send a MAC with leading blanks.
The chip is reached in esptool's no-reset modes (ESPTOOL_BEFORE/AFTER): a pty has no modem
lines, like a fixture without an auto-reset circuit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI_BIN = ROOT / "tests" / "rainmaker_cli" / ".venv" / "bin"
FACTORY = [sys.executable, "-m", "factory.cli"]
EMAIL, PASSWORD = "maker@example.com", "Passw0rd!"
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+/)")
MAC_LINE = re.compile(r"MAC:\s+((?:[0-9a-f]{2}:){5}[0-9a-f]{2})")


class CliMissing(RuntimeError):
    """The RainMaker CLI's venv is not there."""


def cli_program() -> Path:
    program = CLI_BIN / "esp-rainmaker-cli"
    if not program.exists():
        raise CliMissing(f"{program} is missing: run scripts/test once (it makes the CLI's "
                         "venv from tests/rainmaker_cli/requirements.txt)")
    return program


@contextlib.contextmanager
def sim_cloud(work: Path, quota: int = 1000) -> Iterator[str]:
    """`factory sim-cloud rainmaker` with the user EMAIL; yields its base URL."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = work / "cloud.log"  # a file, not a pipe: its access log never blocks it
    with log.open("w") as sink:
        proc = subprocess.Popen([*FACTORY, "sim-cloud", "rainmaker", "--db",
                                 str(work / "cloud.db"), "--listen", "127.0.0.1:0", "--user",
                                 f"{EMAIL}:{PASSWORD}", "--quota", str(quota)], env=env,
                                stderr=sink, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (match := LISTENING.search(log.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"factory sim-cloud rainmaker did not listen: "
                                   f"{log.read_text()[-500:]}")
            time.sleep(0.05)
        yield match[1]
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def sim_chip(root: Path, mac: str, *, chip: str = "esp32c3",
             baud: int = 115200) -> Iterator[str]:
    """`factory sim-unit --driver esptool` with flash in root/flash.bin; yields its port."""
    link = root.with_name(root.name + ".tty")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([*FACTORY, "sim-unit", "--driver", "esptool", "--chip", chip,
                             "--root", str(root), "--link", str(link), "--hardware-id", mac,
                             "--baud", str(baud)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not link.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("factory sim-unit did not make its pty")
            time.sleep(0.05)
        yield str(link)
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass(frozen=True)
class Cli:
    """The CLI with its own config folder, logged in to the simulated service."""

    env: dict[str, str]
    out: Path  # where it keeps claim data (per user, per MAC)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(cli_program()), *args], env=self.env, text=True,
                              capture_output=True, timeout=120, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"esp-rainmaker-cli {args[0]} exited {done.returncode}: "
                               f"{done.stdout[-500:]}{done.stderr[-500:]}")
        return done


def logged_in(work: Path, url: str, email: str = EMAIL, password: str = PASSWORD) -> Cli:
    """A custom profile for `url`, switched to, and logged in with the CLI's own commands."""
    config = work / "rainmaker-config"
    env = {**os.environ, "RM_USER_CONFIG_DIR": str(config), "HOME": str(work),
           "ESPTOOL_BEFORE": "no-reset", "ESPTOOL_AFTER": "no-reset"}
    cli = Cli(env, work / "claim-data")
    cli.run("profile", "add", "sim", "--base-url", url)
    cli.run("profile", "switch", "sim")
    profiles = config / "profiles" / "profiles.json"
    data = json.loads(profiles.read_text())
    data["custom_profiles"]["sim"]["claim_base_url"] = url
    profiles.write_text(json.dumps(data, indent=2))
    login = cli.run("login", "--user_name", email, "--password", password)
    if "Login successful" not in login.stdout:
        raise RuntimeError(f"esp-rainmaker-cli login failed: {login.stdout[-500:]}")
    return cli


def read_mac(cli: Cli, port: str) -> str:
    """The chip's MAC as the claim API wants it, read by esptool (the CLI's own esptool)."""
    done = subprocess.run([str(CLI_BIN / "esptool"), "--port", port, "read-mac"],
                          env=cli.env, text=True, capture_output=True, timeout=60, check=True)
    match = MAC_LINE.search(done.stdout)
    if match is None:
        raise RuntimeError(f"esptool read-mac printed no MAC: {done.stdout[-300:]}")
    return match[1].replace(":", "").upper()


@dataclass(frozen=True)
class Board:
    mac: str
    seconds: float
    output: str  # what the CLI printed (it exits 0 even when the claim failed)


def claim_board(cli: Cli, port: str, *, platform: str = "esp32c3",
                addr: str = "0x340000") -> Board:
    """One board through the CLI's flow: MAC read, claim, NVS build, flash."""
    started = time.perf_counter()
    mac = read_mac(cli, port)
    done = cli.run("claim", port, "--platform", platform, "--mac", mac, "--addr", addr,
                   "--outdir", str(cli.out))
    return Board(mac, time.perf_counter() - started, done.stdout + done.stderr)


def units_per_minute(boards: int, *, baud: int = 115200, work: Path | None = None) -> float:
    """The CLI's flow over `boards` new boards, one at a time (a new simulated chip with a new
    MAC each); units per minute of the claims alone (not the set-up or login)."""
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = stack.enter_context(sim_cloud(work))
        cli = logged_in(work, url)
        spent = 0.0
        for i in range(boards):
            mac = "7c:df:a1:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
            with sim_chip(work / f"board{i}", mac, baud=baud) as port:
                board = claim_board(cli, port)
            if "Claim verify done" not in board.output:
                raise RuntimeError(f"the CLI's claim of {board.mac} failed: "
                                   f"{board.output[-500:]}")
            spent += board.seconds
        return 60.0 * boards / spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", type=int, default=3)
    parser.add_argument("--baud", type=int, default=115200)
    args = parser.parse_args()
    try:
        rate = units_per_minute(args.boards, baud=args.baud)
    except (CliMissing, RuntimeError) as exc:
        print(f"rainmaker_cli_flow: {exc}", file=sys.stderr)
        return 1
    print(f"RainMaker CLI flow, one board at a time at {args.baud} baud: {rate:.1f} units/min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
