"""Wiring: open the journal, build the app, serve until SIGTERM, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from botocore.exceptions import ProfileNotFound

from factory.config import ConfigError, StationConfig
from factory.journal.sqlite import Journal
from factory.labels.service import Label, Labels
from factory.metrics import Metrics
from factory.units.fixture import FixtureRunner
from factory.units.pipeline import Identify, Issue, Step, UnitRun, Verify, Write
from factory.upstream.aws import AwsIotUpstream, make_client
from factory.upstream.aws_certs import pem_blocks
from factory.upstream.http import HttpUpstream
from factory.upstream.outbox import OutboxWorker, registration_payload
from factory.web.app import make_app

log = logging.getLogger("factory.station")


async def serve(config: StationConfig, *, access_log: bool = True) -> None:
    """Run the station until SIGTERM or SIGINT; queued journal writes finish before exit."""
    async with contextlib.AsyncExitStack() as stack:
        journal = await Journal.open(config.journal, config.station_id)
        stack.push_async_callback(journal.close)
        labels = Labels(config, journal)
        labels.check()  # a bad template stops the station here, before any unit
        metrics = Metrics(config.journal)
        outbox = await start_upstream(config, journal, stack)
        runner = web.AppRunner(
            make_app(config, journal, metrics),
            access_log=logging.getLogger("aiohttp.access") if access_log else None,
            handle_signals=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        await site.start()
        for host, port in (a[:2] for a in runner.addresses):
            log.info("station %s listening on http://%s:%d/ (journal %s)",
                     config.station_id, host, port, config.journal)
        tasks = start_fixtures(config, journal, labels, metrics, outbox is not None)
        if outbox is not None:
            tasks.append(asyncio.create_task(outbox.run_forever(), name="outbox"))
        tasks.append(asyncio.create_task(labels.run_forever(), name="label-printer"))
        if config.printer.enabled:
            log.info("labels print on CUPS queue %s; PDFs kept in %s", config.printer.queue,
                     config.printer.keep)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: finishing queued journal writes")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def start_upstream(config: StationConfig, journal: Journal,
                         stack: contextlib.AsyncExitStack) -> OutboxWorker | None:
    """The outbox worker for the configured upstream, or None without one."""
    upstream = config.upstream
    if not upstream.enabled:
        return None
    if upstream.kind == "aws-iot":
        aws = aws_upstream(config)
        stack.callback(aws.close)
        log.info("units are registered in AWS IoT %s (%d at a time)", upstream.region,
                 upstream.concurrency)
        return OutboxWorker(journal, aws, concurrency=upstream.concurrency)
    assert upstream.token_file is not None
    try:
        token = upstream.token_file.read_text().strip()
    except OSError as exc:
        raise ConfigError(config.source, "upstream.token_file",
                          f"cannot be read: {exc.strerror}") from exc
    session = await stack.enter_async_context(aiohttp.ClientSession())
    client = HttpUpstream(session, upstream.url, token, timeout=upstream.timeout)
    log.info("units are registered at %s (%d at a time)", upstream.url, upstream.concurrency)
    return OutboxWorker(journal, client, concurrency=upstream.concurrency)


def aws_upstream(config: StationConfig) -> AwsIotUpstream:
    """The aws-iot adapter for the config: credentials from the standard AWS chain."""
    upstream = config.upstream
    chain: tuple[str, ...] = ()
    if upstream.ca_file is not None:
        try:
            chain = tuple(pem_blocks(upstream.ca_file.read_text()))
        except OSError as exc:
            raise ConfigError(config.source, "upstream.ca_file",
                              f"cannot be read: {exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigError(config.source, "upstream.ca_file",
                              f"is not a PEM certificate bundle: {exc}") from exc
    try:
        client = make_client(upstream.region, endpoint_url=upstream.endpoint_url,
                             profile=upstream.profile, timeout=upstream.timeout,
                             pool=max(10, upstream.concurrency))
    except ProfileNotFound as exc:
        raise ConfigError(config.source, "upstream.profile", str(exc)) from exc
    return AwsIotUpstream(client, station=config.station_id, policy=upstream.policy,
                          thing_types=upstream.thing_types, thing_group=upstream.thing_group,
                          ca_chain=chain, workers=upstream.concurrency)


def start_fixtures(config: StationConfig, journal: Journal, labels: Labels,
                   metrics: Metrics, register: bool = False) -> list[asyncio.Task[None]]:
    """One task per configured fixture; each keeps going whatever its units do."""
    tasks = []
    verify = Verify(registration if register else None)
    # A label only after the device file verified; registration queued with `verified`.
    steps: list[Step] = [Identify(), Issue(), Write(), verify, Label(labels)]
    for fixture in config.fixtures:
        product = config.product(fixture.product)
        assert product is not None  # the config checked it
        runner = FixtureRunner(fixture, product, journal, steps, metrics.observe_step)
        metrics.watch_fixture(runner.status)
        log.info("fixture %s: %s driver on %s at %d baud, product %s", fixture.name,
                 fixture.driver, fixture.port, fixture.baud, fixture.product)
        tasks.append(asyncio.create_task(runner.run_forever(), name=f"fixture-{fixture.name}"))
    return tasks


def registration(run: UnitRun) -> tuple[str, dict[str, Any]]:
    """The outbox request a verified unit causes: register it upstream."""
    assert run.uci is not None
    return "register", registration_payload(
        run.uci, run.product.id, run.hardware_id, run.product.model, run.product.name,
        datetime.now(UTC).isoformat(timespec="seconds"))
