"""Wiring: open the journal, build the app, serve until SIGTERM, shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from factory.config import StationConfig
from factory.journal.sqlite import Journal
from factory.labels.errors import LabelError
from factory.labels.service import Label, Labels
from factory.metrics import Metrics
from factory.units.fixture import FixtureRunner
from factory.units.pipeline import DEFAULT_STEPS
from factory.web.app import make_app

log = logging.getLogger("factory.station")


async def serve(config: StationConfig, *, access_log: bool = True) -> None:
    """Run the station until SIGTERM or SIGINT; queued journal writes finish before exit."""
    journal = await Journal.open(config.journal, config.station_id)
    labels = Labels(config, journal)
    metrics = Metrics(config.journal)
    try:
        labels.check()
    except LabelError:
        await journal.close()
        raise
    runner = web.AppRunner(make_app(config, journal, metrics),
                           access_log=logging.getLogger("aiohttp.access") if access_log else None,
                           handle_signals=False)
    try:
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        await site.start()
        for host, port in (a[:2] for a in runner.addresses):
            log.info("station %s listening on http://%s:%d/ (journal %s)",
                     config.station_id, host, port, config.journal)
        fixtures = start_fixtures(config, journal, labels, metrics)
        fixtures.append(asyncio.create_task(labels.run_forever(), name="label-printer"))
        if config.printer.enabled:
            log.info("labels print on CUPS queue %s; PDFs kept in %s", config.printer.queue,
                     config.printer.keep)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: finishing queued journal writes")
        for task in fixtures:
            task.cancel()
        await asyncio.gather(*fixtures, return_exceptions=True)
    finally:
        await runner.cleanup()
        await journal.close()


def start_fixtures(config: StationConfig, journal: Journal, labels: Labels,
                   metrics: Metrics) -> list[asyncio.Task[None]]:
    """One task per configured fixture; each keeps going whatever its units do."""
    tasks = []
    steps = [*DEFAULT_STEPS, Label(labels)]  # a label only after the device file verified
    for fixture in config.fixtures:
        product = config.product(fixture.product)
        assert product is not None  # the config checked it
        runner = FixtureRunner(fixture, product, journal, steps, metrics.observe_step)
        metrics.watch_fixture(runner.status)
        log.info("fixture %s: %s driver on %s at %d baud, product %s", fixture.name,
                 fixture.driver, fixture.port, fixture.baud, fixture.product)
        tasks.append(asyncio.create_task(runner.run_forever(), name=f"fixture-{fixture.name}"))
    return tasks
