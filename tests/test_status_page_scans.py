"""A keyboard-wedge scanner typing into the status page, in a real headless Chromium: keys
sent as a wedge scanner sends them (a fast burst, then Enter) bind a pre-printed label to the
unit in the fixture and then check the label on it; slow typing is not taken as a scan; a
refused label and a scan for a fixture that is not waiting are answered on the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from factory import uci as uci_codec
from factory.config import load
from factory.journal import open_journal
from factory.journal.records import IssueRequest
from factory.tokens import new_token, token_hash
from tests.conftest import CONFIG_TEXT, OTHER_PRODUCT, PRODUCT, run_cli, write_config
from tests.test_durability import station_process
from tests.test_label_scans_crash import events
from tests.test_status_page import WAIT_MS, chromium, sim_unit

pytestmark = pytest.mark.slow
WEDGE_DELAY_MS = 5  # a wedge scanner types a key every few milliseconds
PERSON_DELAY_MS = 200  # a person at the keyboard


async def wedge(page: Page, code: str) -> None:
    await page.keyboard.type(code, delay=WEDGE_DELAY_MS)
    await page.keyboard.press("Enter")


async def test_a_wedge_scanner_binds_and_checks_labels_through_the_page(
        tmp_path: Path) -> None:
    link = tmp_path / "unit.tty"
    path = write_config(tmp_path, CONFIG_TEXT + f"""
[[fixtures]]
name = "line-1"
port = "{link.name}"
driver = "console"
product = "{PRODUCT}"
poll_interval = 0.1
bind = "scan"
scan_check = true

[fixtures.console]
identify_command = "cat sys/class/net/eth0/address"
""")
    config = load(path)
    journal = await open_journal(config.journal, config.station_id)
    try:
        token = new_token()
        await journal.add_token("screen", "operator", token_hash(token))
        labels = (await journal.issue(IssueRequest(product=PRODUCT, actor="t", count=2))).ucis
        other = (await journal.issue(IssueRequest(product=OTHER_PRODUCT, actor="t"))).ucis
    finally:
        await journal.close()

    async with station_process(path) as (_, url), \
            chromium(tmp_path / "chromium-profile") as browser:
        page = await browser.new_page()
        await page.goto(f"{url}/?token={token}")
        await expect(page.locator("#link")).to_have_text("Live", timeout=WAIT_MS)
        card = page.locator(".fixture", has_text="line-1")
        field = page.locator("#scan-line-1")
        answer = page.locator("form.scan[data-fixture='line-1'] output")

        # No unit: a scan is answered, and ignored.
        await wedge(page, labels[0])
        await expect(answer).to_contain_text("not waiting for a scan", timeout=WAIT_MS)

        async with sim_unit(tmp_path / "unit", link, "02:00:00:00:00:51"):
            await expect(card.locator(".state")).to_have_text("Scan the unit's label",
                                                              timeout=WAIT_MS)
            await expect(field).to_be_focused()
            await field.blur()
            # A person typing a code somewhere on the page is no scan.
            await page.keyboard.type(labels[0], delay=PERSON_DELAY_MS)
            await page.keyboard.press("Enter")
            await wedge(page, f"https://claim.example.com/c/{other[0]}")
            await expect(answer).to_contain_text(f"is for product {OTHER_PRODUCT}")
            await expect(card.locator(".reason")).to_contain_text(OTHER_PRODUCT)
            await wedge(page, uci_codec.human(labels[1]))
            await expect(answer).to_contain_text("bound")
            await expect(card.locator(".state")).to_have_text("Scan the label on the unit",
                                                              timeout=WAIT_MS)
            await expect(field).to_be_focused()
            await wedge(page, f"https://claim.example.com/c/{labels[1]}")
            await expect(answer).to_contain_text("matches the unit")
            await expect(card.locator(".state")).to_have_text("Done: unplug the unit",
                                                              timeout=WAIT_MS)
            await expect(page.locator("#counts .count-checked .today")).to_have_text(
                "1", timeout=WAIT_MS)
    assert events(path, labels[0]) == ["issued"]  # the slow typing bound nothing
    kinds = events(path, labels[1])
    assert kinds == ["issued", "bound", "written", "verified", "label_checked"]
    assert "bound" not in events(path, other[0])
    assert run_cli(path, "unit", labels[1]).returncode == 0
