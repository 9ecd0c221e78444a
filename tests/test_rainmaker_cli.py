"""The RainMaker CLI (`esp-rainmaker-cli`, its own venv made by scripts/test) referees the
simulated claiming service: through its public commands (profile add, login, claim) it logs
in, claims a simulated ESP32-C3 on a pty and flashes the NVS it built, which must land in the
chip's flash.bin exactly as the station's own rmaker_creds are laid out.

Covered: the CLI's login (login2), its claim module end to end (mqtt_host, claim/initiate,
claim/verify with its CSR, its NVS build, esptool write_flash) and its handling of a refusal
(the quota's words, exit status 0). Not covered: the CLI's own MAC read (esptool 5 broke its
parse; the MAC is read with esptool and given as --mac, see scripts/rainmaker_cli_flow.py)
and its Cognito token refresh (the simulated tokens outlive the test)."""

from __future__ import annotations

import base64
import importlib
import sys
from types import ModuleType

import pytest

from factory import certs
from factory.config.nvs import NvsLayout
from factory.units import esp_nvs
from factory.upstream.rainmaker_claim import creds_entries

from .conftest import ROOT

pytestmark = pytest.mark.slow
MAC = "7c:df:a1:00:03:3b"
OFFSET, SIZE = 0x340000, 0x6000


@pytest.fixture(scope="module")
def flow() -> ModuleType:
    """scripts/rainmaker_cli_flow.py (as scripts import it: from their own folder)."""
    if str(ROOT / "scripts") not in sys.path:
        sys.path.append(str(ROOT / "scripts"))
    module = importlib.import_module("rainmaker_cli_flow")
    try:
        module.cli_program()
    except module.CliMissing as exc:
        pytest.fail(str(exc))
    return module


def test_the_clis_claim_completes_and_its_nvs_lands_in_the_chips_flash(tmp_path, flow):
    with flow.sim_cloud(tmp_path, quota=1) as url:
        cli = flow.logged_in(tmp_path, url)
        with flow.sim_chip(tmp_path / "board", MAC, baud=0) as port:
            board = flow.claim_board(cli, port)
            assert board.mac == "7CDFA100033B"
            assert "Claim verify done" in board.output, board.output[-800:]
            refused = cli.run("claim", port, "--platform", "esp32c3", "--mac", "7CDFA100033C",
                              "--outdir", str(cli.out))  # quota 1: it says so, and exits 0
    assert refused.returncode == 0
    assert "User does not have available quota" in refused.stdout + refused.stderr
    flash = (tmp_path / "board" / "flash.bin").read_bytes()
    held = esp_nvs.read_image(flash[OFFSET:OFFSET + SIZE])
    creds = held["rmaker_creds"]
    assert set(creds) == {"node_id", "mqtt_host", "mqtt_cred_host", "client_cert",
                          "client_key", "random"}
    node_id = creds["node_id"]
    assert isinstance(node_id, bytes) and len(node_id) == 22
    cert, key = creds["client_cert"], creds["client_key"]
    assert isinstance(cert, bytes) and isinstance(key, bytes)
    assert certs.certificate_key_id(cert.decode()) == \
        certs.spki_sha256(certs.load_key(key).public_key())
    # The station's rmaker_creds for the same values read back identically: same names,
    # same NVS types (blobs, random as hex2bin), same bytes.
    values = {k: v for k, v in creds.items() if isinstance(v, bytes)}
    ours = creds_entries(values["node_id"], values["mqtt_host"], values["client_cert"],
                         values["client_key"], values["random"], values["mqtt_cred_host"])
    image = esp_nvs.build_image(NvsLayout(offset=OFFSET, size=SIZE), [],
                                {"rmaker_creds": ours})
    assert esp_nvs.read_image(image)["rmaker_creds"] == creds
    assert [e.key for e in ours] == ["node_id", "mqtt_host", "mqtt_cred_host", "client_cert",
                                     "client_key", "random"]  # the CLI's node_info.csv order
    assert base64.b64decode(ours[0].text) == node_id
