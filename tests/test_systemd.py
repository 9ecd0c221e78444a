"""The systemd units and scripts/install: the real install script into a temporary root, and
`systemd-analyze verify` of the units exactly as installed (ExecStart must exist there)."""

from __future__ import annotations

import configparser
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
UNITS = ("factory-station.service", "factory-station@.service", "factory-registry.service")
ANALYZE = shutil.which("systemd-analyze")


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)  # DeviceAllow= repeats
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "systemd" / name)
    return parser


@pytest.mark.parametrize("name", UNITS)
def test_units_are_notify_services_with_a_watchdog_and_hardening(name: str) -> None:
    service = unit(name)["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["User"] == "factory"
    assert service["ExecStart"].startswith("/opt/factory-station/venv/bin/factory ")
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "CapabilityBoundingSet": ""}.items():
        assert service[key] == value, key
    assert "StateDirectory" in service


def test_station_units_reach_only_serial_devices() -> None:
    for name in UNITS[:2]:
        text = (ROOT / "systemd" / name).read_text()
        assert "DevicePolicy=closed" in text
        allowed = [line.split("=", 1)[1] for line in text.splitlines()
                   if line.startswith("DeviceAllow=")]
        assert sorted(allowed) == ["char-ttyACM rw", "char-ttyS rw", "char-ttyUSB rw"]
        assert "SupplementaryGroups=dialout lp" in text
    template = unit("factory-station@.service")["Service"]
    assert "/etc/factory-station/%i.toml" in template["ExecStart"]
    assert template["StateDirectory"] == "factory-station/%i"


def install(root: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(ROOT / "scripts" / "install"), "--root", str(root),
                             "--no-system"], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    return result


def verify(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify under `root`; it exits 0 on unknown keys and only warns, so
    the callers count any stderr as a failure."""
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, "verify", f"--root={root}", name], capture_output=True,
                          text=True, timeout=60, check=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_install_into_a_root_and_verify_the_installed_units(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root)
    opt, etc = root / "opt" / "factory-station", root / "etc"
    factory = opt / "venv" / "bin" / "factory"
    assert mode(factory) & 0o111
    help_text = subprocess.run([str(factory), "--help"], capture_output=True, text=True,
                               check=True).stdout
    assert "serve" in help_text and "registry" in help_text
    assert sorted(p.name for p in (opt / "labels").iterdir()) == sorted(
        p.name for p in (ROOT / "labels").glob("*.toml"))
    for name in UNITS:
        installed = etc / "systemd" / "system" / name
        assert installed.read_bytes() == (ROOT / "systemd" / name).read_bytes()
        assert mode(installed) == 0o644
    config = etc / "factory-station" / "station.toml"
    assert mode(etc / "factory-station") == 0o750 and mode(config) == 0o640
    assert (etc / "factory-station" / "line.example.toml").exists()

    # The units as installed, against the distribution's own units (sysinit.target, ...).
    shutil.copytree("/usr/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system",
                    symlinks=True)
    for name in ("factory-station.service", "factory-station@line1.service",
                 "factory-registry.service"):
        result = verify(root, name)
        assert (result.returncode, result.stderr) == (0, ""), name

    # The check above is not vacuous: a warning (here an unknown key) is seen...
    bad = etc / "systemd" / "system" / "factory-bad.service"
    bad.write_text((ROOT / "systemd" / UNITS[0]).read_text().replace(
        "[Service]\n", "[Service]\nNoSuchKey=1\n"))
    assert "NoSuchKey" in verify(root, bad.name).stderr
    # ...and so is a missing ExecStart binary.
    factory.rename(factory.with_name("moved"))
    assert verify(root, UNITS[0]).returncode != 0
    factory.with_name("moved").rename(factory)

    # Again: an upgrade keeps the config an engineer edited.
    config.write_text(config.read_text().replace('id = "station-1"', 'id = "line1-bench"'))
    out = install(root).stdout
    assert "keeping" in out
    assert 'id = "line1-bench"' in config.read_text()
