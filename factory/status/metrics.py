"""Prometheus metrics of one station: step outcomes and latencies, HTTP answers, fixture
states, the upstream outbox, journal size. One registry per station (tests build their own)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from factory.states import FIXTURE_STATES, FixtureStatus

# Steps on a serial line take milliseconds to seconds.
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _FixtureCollector(Collector):
    """Reads the fixtures' live status when scraped, so nothing has to push it."""

    def __init__(self, statuses: Callable[[], Iterable[FixtureStatus]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily("factory_fixture_state",
                                  "1 for the state each fixture is in now",
                                  labels=["fixture", "state"])
        done = GaugeMetricFamily("factory_fixture_units", "Units through each fixture since "
                                 "start, by outcome", labels=["fixture", "outcome"])
        for status in self._statuses():
            for name in FIXTURE_STATES:
                state.add_metric([status.name, name], 1.0 if status.state == name else 0.0)
            done.add_metric([status.name, "done"], status.done)
            done.add_metric([status.name, "failed"], status.failed)
        yield state
        yield done


class Metrics:
    """The station's metrics; `observe_step` is the pipeline's StepObserver."""

    def __init__(self, journal_path: Path) -> None:
        self.registry = CollectorRegistry()
        self._fixtures: list[FixtureStatus] = []
        self._fleet: tuple[Gauge, Gauge, Gauge, Gauge] | None = None
        self.steps = Counter("factory_steps", "Pipeline steps by step and outcome (ok or the "
                             "failure's code)", ["step", "outcome"], registry=self.registry)
        self.step_seconds = Histogram("factory_step_seconds", "Time one pipeline step took",
                                      ["step"], buckets=STEP_BUCKETS, registry=self.registry)
        self.http = Counter("factory_http_responses", "HTTP answers by route and status",
                            ["route", "status"], registry=self.registry)
        self.outbox = Gauge("factory_outbox_entries", "Upstream requests in the outbox by "
                            "state (pending: not yet accepted; failed: refused, set aside)",
                            ["state"], registry=self.registry)
        self.outbox_oldest = Gauge("factory_outbox_oldest_seconds", "Age of the oldest "
                                   "pending upstream request (0 when none)",
                                   registry=self.registry)
        journal = Gauge("factory_journal_bytes", "Size of the journal with its WAL",
                        registry=self.registry)
        journal.set_function(lambda: _size(journal_path))
        self.registry.register(_FixtureCollector(lambda: self._fixtures))

    def watch_fixture(self, status: FixtureStatus) -> None:
        """Report this fixture's state from now on."""
        self._fixtures.append(status)

    def fixtures(self) -> Sequence[FixtureStatus]:
        """The fixtures being watched (the status page shows them too)."""
        return tuple(self._fixtures)

    def observe_outbox(self, pending: int, failed: int, oldest_age: float | None) -> None:
        """Set the outbox gauges (read from the journal just before a scrape)."""
        self.outbox.labels("pending").set(pending)
        self.outbox.labels("failed").set(failed)
        self.outbox_oldest.set(oldest_age or 0.0)

    def observe_fleet(self, events: int | None, seconds: float | None, away: str,
                      refused: str) -> None:
        """Set the fleet gauges (mode 2: this station ships to a fleet center); made at the
        first call, so a station that ships nowhere shows none. NaN: not known yet."""
        if self._fleet is None:
            self._fleet = (
                Gauge("factory_fleet_lag_events", "Events of this station the fleet center "
                      "does not hold yet", registry=self.registry),
                Gauge("factory_fleet_lag_seconds", "Age of the oldest event not shipped to "
                      "the fleet center (0 when none)", registry=self.registry),
                Gauge("factory_fleet_center_up", "1 when the fleet center answered the "
                      "shipper's last attempt", registry=self.registry),
                Gauge("factory_fleet_refused", "1 while the fleet center refuses this "
                      "station's events (a person must look)", registry=self.registry))
        lag, age, up, no = self._fleet
        lag.set(math.nan if events is None else events)
        age.set(math.nan if seconds is None else seconds)
        up.set(0.0 if away or events is None else 1.0)
        no.set(1.0 if refused else 0.0)

    def observe_step(self, step: str, outcome: str, seconds: float) -> None:
        self.steps.labels(step, outcome).inc()
        self.step_seconds.labels(step).observe(seconds)


def _size(path: Path) -> float:
    total = 0
    for candidate in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            total += candidate.stat().st_size
    return float(total)
