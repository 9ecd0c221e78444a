"""The journal's anchor: a journal that lost its newest events, or was replaced, is named at
start and held (no issuing) until a person accepts the loss; the anchor file survives a torn
write and two writers."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from factory.config import StationConfig
from factory.journal import open_journal
from factory.journal.anchor import SLOT, AnchorFile, Mark, anchor_path
from factory.journal.errors import JournalError, JournalUnavailable
from factory.journal.records import IssueRequest
from factory.journal.sqlite.checks import chain_head
from tests.conftest import PRODUCT, OpenJournal


def request(count: int = 1, hardware_id: str | None = None) -> IssueRequest:
    return IssueRequest(product=PRODUCT, count=count, hardware_id=hardware_id, actor="test")


async def lose_newest(open_test_journal: OpenJournal, config: StationConfig,
                      journal_backend: str) -> None:
    """A journal one issue ahead of an older copy of itself, the copy then put back: its
    anchor remembers events the journal no longer holds."""
    assert journal_backend == "sqlite", "a new backend says here how it loses its newest events"
    j = await open_test_journal()
    await j.issue(request(hardware_id="HW-1"))
    await j.close()  # the last connection checkpoints: the file alone holds the journal
    shutil.copy(config.journal, f"{config.journal}.old")
    j = await open_test_journal()
    await j.issue(request(2))
    await j.close()
    shutil.copy(f"{config.journal}.old", config.journal)


# SQLite only: the PostgreSQL anchor has tests of its own (tests/test_journal_postgres.py).
@pytest.mark.parametrize("journal_backend", ["sqlite"], indirect=True)
async def test_a_journal_behind_its_anchor_is_held_until_the_loss_is_accepted(
        open_test_journal: OpenJournal, config: StationConfig, journal_backend: str) -> None:
    await lose_newest(open_test_journal, config, journal_backend)
    j = await open_test_journal()
    try:
        assert j.hold.startswith("events 2..3 are missing (the anchor, written ")
        assert "says the journal reached event 3" in j.hold
        with pytest.raises(JournalUnavailable, match=r"held: events 2\.\.3 are missing"):
            await j.issue(request(hardware_id="HW-2"))
        with pytest.raises(JournalUnavailable, match="held"):
            await j.note("fixture_failed", "test", {})
        await j.add_token("t", "viewer", "0" * 64)  # bookkeeping is not issuing

        data = await j.accept_loss("cli:test")
        assert data["problem"].startswith("events 2..3 are missing")
        assert j.hold == ""
        assert (await j.issue(request(hardware_id="HW-2"))).created
        events = [e async for e in j.events()]
        assert [e.kind for e in events] == ["issued", "loss_accepted", "issued"]
        assert events[1].actor == "cli:test" and events[1].data["problem"] == data["problem"]
        assert (await j.verify()).ok
        with pytest.raises(JournalError, match="not held"):
            await j.accept_loss("cli:test")
    finally:
        await j.close()
    j = await open_test_journal()  # anchored again: starts without a hold
    assert j.hold == ""
    await j.close()


async def test_a_replaced_journal_is_named_and_held(config: StationConfig) -> None:
    j = await open_journal(config.journal, config.station_id)
    await j.issue(request(2))
    await j.close()
    Path(config.journal).unlink()  # another journal, as long, in its place
    Path(f"{config.journal}-new").mkdir()
    other = Path(f"{config.journal}-new") / "journal.sqlite"
    j = await open_journal(other, config.station_id)
    await j.issue(request(2))
    await j.close()
    shutil.copy(other, config.journal)
    j = await open_journal(config.journal, config.station_id)
    try:
        assert j.hold.startswith("event 2 is not the one the anchor (written ")
        assert "replaced or rewritten" in j.hold
        with pytest.raises(JournalUnavailable, match="replaced or rewritten"):
            await j.issue(request())
    finally:
        await j.close()


async def test_a_journal_without_an_anchor_starts_one(config: StationConfig) -> None:
    j = await open_journal(config.journal, config.station_id)
    await j.issue(request(3))
    await j.close()
    anchor = anchor_path(Path(config.journal))
    anchor.unlink()  # a journal from before anchors
    j = await open_journal(config.journal, config.station_id)
    try:
        assert j.hold == ""
        assert anchor.stat().st_mode & 0o777 == 0o600
        reading = AnchorFile(anchor, create=False).read()
        assert reading.mark is not None and reading.mark.seq == 3
    finally:
        await j.close()


async def test_the_anchor_is_synced_before_the_caller_is_told(config: StationConfig) -> None:
    j = await open_journal(config.journal, config.station_id)
    anchor = AnchorFile(anchor_path(Path(config.journal)), create=False)
    try:
        for count in (1, 5, 2):
            await j.issue(request(count))
            mark = anchor.read().mark
            assert mark is not None
            assert mark.same_point(await chain_head(j._writer_conn))  # type: ignore[attr-defined]
    finally:
        anchor.close()
        await j.close()


def test_a_torn_write_keeps_the_previous_value(tmp_path: Path) -> None:
    path = tmp_path / "j.anchor"
    anchor = AnchorFile(path, create=True)
    first = anchor.advance(Mark(5, "a" * 64, at="t1"), None)
    second = anchor.advance(Mark(9, "b" * 64, at="t2"), first)
    assert second is not None and second.seq == 9
    # The next write goes to the slot holding 5; tear it half-way.
    raw = bytearray(path.read_bytes())
    slot = 0 if raw[:SLOT].split()[2] == b"5" else 1
    raw[slot * SLOT + SLOT // 2: (slot + 1) * SLOT] = b"\x00" * (SLOT - SLOT // 2)
    path.write_bytes(bytes(raw))
    assert anchor.read().mark == second
    # Both slots damaged: nothing to trust, and the file is not empty.
    path.write_bytes(b"\xff" * 2 * SLOT)
    assert anchor.read().mark is None and not anchor.read().empty
    anchor.close()


def test_two_writers_never_lower_the_anchor(tmp_path: Path) -> None:
    path = tmp_path / "j.anchor"
    station, cli = AnchorFile(path, create=True), AnchorFile(path, create=True)
    at5 = station.advance(Mark(5, "a" * 64), None)
    at8 = cli.advance(Mark(8, "c" * 64), at5)  # the CLI appended after the station
    assert at8 is not None and at8.seq == 8
    # The station, not knowing, tries to write its older head: it gets the CLI's back.
    assert station.advance(Mark(6, "b" * 64), at5) == at8
    assert station.read().mark == at8
    reset = station.reset(Mark(2, "d" * 64))  # a loss accepted: a new epoch, lower seq
    assert reset.epoch == 1 and cli.read().mark == reset
    station.close()
    cli.close()


async def test_another_writer_anchoring_past_a_commit_anchors_it_too(
        open_test_journal: OpenJournal, journal_backend: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """While the station anchors its commit, another process of the station (the CLI)
    commits and anchors past it, again at each try: that anchors the station's commit too,
    and is no split (it was taken for one after three such moves, and the station stopped
    writing)."""
    options = {"anchor": tmp_path / "pg.anchor"} if journal_backend == "postgresql" else {}
    station, cli = await open_test_journal(**options), await open_test_journal(**options)
    try:
        await station.issue(request())
        loop = asyncio.get_running_loop()
        anchor = station._anchor  # type: ignore[attr-defined]
        real, moves = anchor.advance, list[str]()

        def advance(mark: Mark, expected: Mark | None) -> Mark | None:
            if len(moves) < 3:  # the CLI gets there first, each time
                moves.append(asyncio.run_coroutine_threadsafe(
                    cli.issue(request()), loop).result(10).ucis[0])
            return real(mark, expected)

        monkeypatch.setattr(anchor, "advance", advance)
        assert (await station.issue(request())).created
        assert (await station.issue(request())).created  # and it goes on writing
        assert len(moves) >= 1
        assert station.hold == ""
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        result = await station.verify()
        assert result.ok and result.checked == 3 + len(moves), result
    finally:
        await station.close()
        await cli.close()
