"""/metrics: Prometheus text a real scraper parses, with the numbers the station lived."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from factory.config import StationConfig
from factory.journal.interface import Journal
from factory.states import FixtureStatus
from factory.units.errors import UnitGone
from factory.units.pipeline import Pipeline, UnitRun
from factory.web.keys import METRICS
from tests.conftest import PRODUCT, Station, register_request
from tests.test_pipeline import MemoryUnit


async def scrape(station: Station) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await station.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_http_answers_are_counted_by_route(station: Station,
                                                 journal_backend: str) -> None:
    for _ in range(3):
        await station.client.post("/api/v1/ucis", json={"product": PRODUCT},
                                  headers=station.auth("device"))
    await station.client.get("/api/v1/units/7KQ2M9XD3FHT0W5R", headers=station.auth("viewer"))
    samples = await scrape(station)
    assert samples[("factory_http_responses_total",
                    (("route", "/api/v1/ucis"), ("status", "201")))] == 3
    # The route pattern, not the UCI, is the label.
    assert samples[("factory_http_responses_total",
                    (("route", "/api/v1/units/{uci}"), ("status", "404")))] == 1
    if journal_backend == "sqlite":  # the file's size; a PostgreSQL journal has no file
        assert samples[("factory_journal_bytes", ())] > 0


async def test_steps_and_fixtures_are_reported(station: Station, config: StationConfig,
                                               journal: Journal) -> None:
    metrics = station.client.app[METRICS]
    product = config.product(PRODUCT)
    assert product is not None
    pipeline = Pipeline(journal, observe=metrics.observe_step)
    await pipeline.provision(UnitRun("f1", product, "device.json5"), MemoryUnit())
    broken = MemoryUnit(hardware_id="02:00:00:00:00:02",
                        fail_at={"write": UnitGone("the unit went away")})
    with pytest.raises(UnitGone):
        await pipeline.provision(UnitRun("f1", product, "device.json5"), broken)
    status = FixtureStatus("f1", "/dev/ttyUSB0")
    status.set("failed", "the unit went away")
    status.done, status.failed = 1, 1
    metrics.watch_fixture(status)

    samples = await scrape(station)
    assert samples[("factory_steps_total", (("outcome", "ok"), ("step", "writing")))] == 1
    assert samples[("factory_steps_total",
                    (("outcome", "unplugged"), ("step", "writing")))] == 1
    assert samples[("factory_step_seconds_count", (("step", "verifying"),))] == 1
    assert samples[("factory_fixture_state", (("fixture", "f1"), ("state", "failed")))] == 1
    assert samples[("factory_fixture_state", (("fixture", "f1"), ("state", "waiting")))] == 0
    assert samples[("factory_fixture_units", (("fixture", "f1"), ("outcome", "done")))] == 1


async def test_the_outbox_backlog_is_reported(station: Station) -> None:
    samples = await scrape(station)
    assert samples[("factory_outbox_entries", (("state", "pending"),))] == 0
    assert samples[("factory_outbox_oldest_seconds", ())] == 0
    issued = await station.client.post("/api/v1/ucis", json={"product": PRODUCT},
                                       headers=station.auth("device"))
    uci = (await issued.json())["uci"]
    await station.journal.record(uci, "verified", "test", {}, state="verified",
                                 enqueue=register_request(uci))
    samples = await scrape(station)
    assert samples[("factory_outbox_entries", (("state", "pending"),))] == 1
    assert samples[("factory_outbox_entries", (("state", "failed"),))] == 0
    assert samples[("factory_outbox_oldest_seconds", ())] >= 0
