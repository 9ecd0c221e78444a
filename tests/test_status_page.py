"""The status page in a real headless Chromium (Debian's, driven by Playwright): a real
station process with a simulated unit on a pseudo-terminal. The page changes as the unit is
provisioned, without a reload, says so when the station goes away and picks up again when it
is back. Screenshots go to
test-artifacts/ for people to look at; the test reads text, never pixels."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import json5
import pytest
from playwright.async_api import BrowserContext, async_playwright, expect

from factory import uci as uci_codec
from tests.conftest import CONFIG_TEXT, FACTORY, PRODUCT, ROOT, run_cli, write_config
from tests.test_durability import station_process

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 30_000  # an upper bound for slow machines, not a timing check


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[BrowserContext]:
    """Debian's chromium on a 1080p screen, with a fresh profile."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1920, "height": 1080})
        try:
            yield context
        finally:
            await context.close()


@contextlib.asynccontextmanager
async def sim_unit(root: Path, link: Path, mac: str) -> AsyncIterator[None]:
    """`factory sim-unit`: a console unit (a real sh) plugged in at `link`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        *FACTORY, "sim-unit", "--driver", "console", "--root", str(root), "--link",
        str(link), "--hardware-id", mac, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).startswith(b"/dev/pts/")
        yield
    finally:
        proc.terminate()
        await proc.wait()


def free_port() -> int:
    """A port for the station to come back on (the page reconnects to the same address)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_page_follows_a_unit_live_and_says_when_the_station_is_gone(
        tmp_path: Path) -> None:
    link = tmp_path / "unit.tty"
    text = CONFIG_TEXT.replace("127.0.0.1:0", f"127.0.0.1:{free_port()}")
    config = write_config(tmp_path, text + f"""
[[fixtures]]
name = "line-1"
port = "{link.name}"
driver = "console"
product = "{PRODUCT}"
poll_interval = 0.1

[fixtures.console]
identify_command = "cat sys/class/net/eth0/address"
""")
    token = run_cli(config, "token", "new", "--role", "viewer", "--name", "screen").stdout
    ARTIFACTS.mkdir(exist_ok=True)
    async with station_process(config) as (station, url), \
            chromium(tmp_path / "chromium-profile") as browser:
        page = await browser.new_page()
        await page.goto(f"{url}/?token={token.strip()}")
        assert page.url == f"{url}/"  # the token went into a cookie, out of the address
        await expect(page.locator("#link")).to_have_text("Live", timeout=WAIT_MS)
        card = page.locator(".fixture", has_text="line-1")
        # No unit plugged in yet: its port is missing, and the banner says what to do.
        await expect(card.locator(".state")).to_have_text("Port problem", timeout=WAIT_MS)
        await expect(page.locator("#attention")).to_contain_text("line-1 cannot use its port")
        await expect(page.locator("#lost")).to_be_hidden()
        await page.screenshot(path=ARTIFACTS / "status-page-attention.png")
        await page.evaluate("window.sameDocument = true")

        async with sim_unit(tmp_path / "unit", link, "02:00:00:00:00:42"):
            await expect(page.locator("#counts .count-verified .today")).to_have_text(
                "1", timeout=WAIT_MS)
            device = json5.loads((tmp_path / "unit" / "config/device.json5").read_text())
            human = uci_codec.human(device["id"])
            await expect(page.locator("#units")).to_contain_text(human)
            await expect(page.locator("#units")).to_contain_text("issued › written › verified")
            await expect(card.locator(".state")).to_have_text("Done: unplug the unit",
                                                              timeout=WAIT_MS)
            await expect(card.locator(".uci")).to_have_text(human)
            await expect(page.locator("#attention")).to_have_text(
                "Line OK: nothing needs you now")
            await expect(page.locator("#counts .count-issued .shift")).to_have_text("1")
            assert await page.evaluate("window.sameDocument") is True  # never reloaded
            await page.screenshot(path=ARTIFACTS / "status-page.png")

            station.kill()
            await station.wait()
            lost = page.locator("#lost")
            await expect(lost).to_be_visible(timeout=WAIT_MS)
            await expect(lost).to_contain_text("STATION UNREACHABLE")
            await expect(page.locator("#attention")).to_be_hidden()  # no "Line OK" now
            await expect(page.locator("#units")).to_contain_text(human)  # the last state
            await page.screenshot(path=ARTIFACTS / "status-page-unreachable.png")

            async with station_process(config):  # back again: the page reconnects itself
                await expect(page.locator("#link")).to_have_text("Live", timeout=WAIT_MS)
                await expect(lost).to_be_hidden()
                await expect(page.locator("#counts .count-verified .today")).to_have_text("1")
                assert await page.evaluate("window.sameDocument") is True
    print(f"screenshots in {ARTIFACTS}: status-page-attention.png, status-page.png, "
          "status-page-unreachable.png")
