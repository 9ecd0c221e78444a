"""Wiring: open the journal, build the app, serve until SIGTERM, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import types
from typing import Any

from aiohttp import web

from factory import claim_secret
from factory.claim_secret import ClaimSecrets
from factory.config import ConfigError, Product, StationConfig
from factory.config.upstream import Upstream, where_credentials_go
from factory.fleet.identity import FleetIssuing
from factory.fleet.shipper import Shipper
from factory.journal import open_journal
from factory.journal.anchor import anchor_path
from factory.journal.interface import Journal
from factory.labels.making import Label, LabelMaker
from factory.labels.print_queue import PrintQueue
from factory.labels.printers.kinds import label_printer
from factory.labels.products import ProductLabels
from factory.listeners import ListenError
from factory.sdnotify import Notifier
from factory.status.metrics import Metrics
from factory.status.snapshot import LiveSources
from factory.units.agent_check import CheckAgentFile
from factory.units.certificate import InstallCertificate, MakeKey
from factory.units.errors import UnitError
from factory.units.esp_nvs import check_fits
from factory.units.fixture import FixtureRunner
from factory.units.label_scans import with_scans
from factory.units.pipeline import Identify, Issue, Step, UnitRun, Verify, Write
from factory.units.scanner import start_scanners
from factory.units.scans import ScanDesk
from factory.upstream.kinds import upstream_client
from factory.upstream.outbox import OutboxWorker
from factory.upstream.rainmaker import RainmakerUpstream
from factory.upstream.rainmaker_claim import ClaimNode
from factory.upstream.requests import PreclaimRequest, RegisterRequest, registration_for
from factory.web.app import http_limits, make_app
from factory.web.listen import start_site

log = logging.getLogger("factory.station")


# Seconds each part gets to finish once the station is told to stop (systemd's
# TimeoutStopSec= in systemd/ leaves room for them all).
HTTP_GRACE = 10.0  # requests in flight
FIXTURE_GRACE = 10.0  # units in the fixtures
OUTBOX_GRACE = 5.0  # the upstream round in flight
STATUS_EVERY = 5.0  # seconds between STATUS= updates to systemd
# Past this the stop is stuck (a bug): say on what, and exit as systemd's TimeoutStopSec= would
# SIGKILL; the journal is durable, so nothing acknowledged is lost.
STOP_LIMIT = HTTP_GRACE + FIXTURE_GRACE + OUTBOX_GRACE + 10.0
EXIT_STUCK = 70  # EX_SOFTWARE


async def serve(config: StationConfig, *, access_log: bool = True) -> None:
    """Run the station until SIGTERM or SIGINT, then stop gracefully (`shut_down`); a second
    signal abandons the units still in the fixtures. Tells systemd when it is ready."""
    notifier = Notifier.from_environ()
    async with contextlib.AsyncExitStack() as stack:
        deadline = StopDeadline()  # armed at the stop signal, or here when serving ends
        stack.callback(deadline.arm, STOP_LIMIT)  # otherwise (first in, last out)
        stack.callback(notifier.close)
        notifier.status("starting: opening the journal")
        journal = await open_journal(config.journal_location, config.station_id, serve=True,
                                     anchor=anchor_path(config.journal))
        stack.push_async_callback(journal.close)
        if config.fleet_url:  # a hardware id new here: the fleet center is asked first
            asking = FleetIssuing(journal, config.fleet_url)
            stack.push_async_callback(asking.close)
            journal = asking
        if journal.hold:  # served read-only, so the status page and /healthz can say why
            log.error("journal %s refuses to issue: %s", config.journal, journal.hold)
        secrets = claim_secret.for_station(config)
        products = ProductLabels(config, secrets)
        products.check()  # a bad template stops the station here, before any unit
        check_factory_data(config)
        printing = PrintQueue(config.printer, journal, label_printer(config.printer))
        maker = LabelMaker(config, journal, products, wake=printing.wake)
        await maker.recover()
        metrics = Metrics(config.journal)
        outbox = await start_upstream(config, journal, stack, secrets)
        # Shipping starts below, with the other tasks; the page shows its lag from now on.
        shipper = Shipper(journal, config.station_id, config.fleet_url) \
            if config.fleet_url else None
        live = LiveSources(fixtures=metrics.fixtures, printer=printing, upstream=outbox,
                           fleet=shipper)
        desk = ScanDesk()
        runner = web.AppRunner(
            make_app(config, journal, metrics, live, maker, desk),
            access_log=logging.getLogger("aiohttp.access") if access_log else None,
            handle_signals=False, shutdown_timeout=HTTP_GRACE,
            **http_limits(config.client_timeout))
        await runner.setup()
        stack.push_async_callback(stop_http, runner)
        try:
            await start_site(runner, config.host, config.port, "--listen, or [station] listen",
                             backlog=1024)
        except ListenError as exc:
            raise ConfigError(config.source, "station.listen", str(exc)) from exc
        urls = [f"http://{host}:{port}/" for host, port in (a[:2] for a in runner.addresses)]
        for url in urls:
            log.info("station %s listening on %s (journal %s)", config.station_id, url,
                     config.journal)
        stop, hurry = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop_signal, stop, hurry)
        fixtures = start_fixtures(config, journal, maker, metrics, outbox, desk)
        tasks = [asyncio.create_task(printing.run_forever(), name="label-printer"),
                 asyncio.create_task(notifier.feed_watchdog(lambda: journal.writing),
                                     name="watchdog"),
                 asyncio.create_task(report_status(notifier, urls, fixtures), name="status"),
                 *start_scanners(config.fixtures, desk)]
        outbox_task = None
        if outbox is not None:
            outbox_task = asyncio.create_task(outbox.run_forever(), name="outbox")
        if shipper is not None:  # cancelled at the end: the center takes a batch whole or not
            tasks.append(asyncio.create_task(shipper.run_forever(), name="fleet-shipper"))
        if config.printer.enabled:
            where = "CUPS queue" if config.printer.kind == "cups" else "raw port"
            log.info("labels print as %s on %s %s; kept in %s", config.printer.language.upper(),
                     where, config.printer.name, config.printer.keep)
        notifier.ready(status_line(urls, fixtures))
        await stop.wait()
        deadline.arm(STOP_LIMIT)
        notifier.stopping("stopping: finishing the units in the fixtures and requests "
                          "in flight")
        await shut_down(runner, fixtures, outbox, outbox_task, hurry)
        log.info("stopping: finishing queued journal writes")
        notifier.status("stopping: closing the journal")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def check_factory_data(config: StationConfig) -> None:
    """A product flashed by esptool fixtures whose factory data cannot be its NVS partition
    stops the station at start (ConfigError), not each of its units on the line."""
    flashed = {fixture.product for fixture in config.fixtures if fixture.driver == "esptool"}
    for index, product in enumerate(config.products):
        if product.id not in flashed:
            continue
        try:
            check_fits(product)
        except UnitError as exc:
            raise ConfigError(config.source, f"products[{index}].nvs",
                              f"{exc.reason} (grow its size or shorten the fields)") from None


def status_line(urls: list[str], fixtures: list[FixtureRunner]) -> str:
    """One line for `systemctl status`: where it serves, each fixture's state, the counts."""
    states = ", ".join(f"{f.status.name} {f.status.state}" for f in fixtures)
    done = sum(f.status.done for f in fixtures)
    failed = sum(f.status.failed for f in fixtures)
    return (f"serving {' '.join(urls)}; {len(fixtures)} fixtures{': ' if states else ''}"
            f"{states}; {done} units done, {failed} failed since start")


async def report_status(notifier: Notifier, urls: list[str],
                        fixtures: list[FixtureRunner]) -> None:
    """Keep the status line systemd shows current (only under systemd)."""
    while notifier.enabled:
        await asyncio.sleep(STATUS_EVERY)
        notifier.status(status_line(urls, fixtures))


def on_stop_signal(stop: asyncio.Event, hurry: asyncio.Event) -> None:
    """The first SIGTERM/SIGINT stops gracefully; the next one hurries it."""
    if stop.is_set():
        log.warning("second stop signal: abandoning the units still in the fixtures")
        hurry.set()
    else:
        log.info("stopping: no new units or requests; finishing those in flight "
                 "(signal again to abandon them)")
    stop.set()


class StopDeadline:
    """Ends a stop that hangs, wherever it hangs: the event loop, asyncio.run's own teardown
    (it waits for every worker thread's call) or a thread Python waits for at exit. Armed once
    the station is told to stop (or serving ends otherwise), it never disarms: a daemon
    thread, so a process that ends in time simply ends. Past `limit` it logs what is still
    running and where each waits, then exits with EXIT_STUCK."""

    def __init__(self) -> None:
        self._armed = False

    def arm(self, limit: float) -> None:
        if not self._armed:
            self._armed = True
            threading.Thread(target=self._watch, args=(limit, asyncio.get_running_loop()),
                             name="stop-deadline", daemon=True).start()

    @staticmethod
    def _watch(limit: float, loop: asyncio.AbstractEventLoop) -> None:
        time.sleep(limit)
        log.critical("stopping took over %g s, stuck on: %s; exiting now (the journal holds "
                     "everything acknowledged; report this as a bug)", limit,
                     "; ".join(still_running(loop)) or "nothing found")
        logging.shutdown()
        os._exit(EXIT_STUCK)


def still_running(loop: asyncio.AbstractEventLoop) -> list[str]:
    """The loop's unfinished tasks and the threads Python waits for at exit (the main one
    too), each with the innermost line it waits at. Read from another thread: a best effort."""
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    except RuntimeError:  # the set changed while it was read
        tasks = []
    found = [f"task {task.get_name()}{_at(_awaiting(task.get_coro()))}" for task in tasks]
    frames = sys._current_frames()
    for thread in threading.enumerate():
        if not thread.daemon and thread.ident is not None:
            found.append(f"thread {thread.name}{_at(frames.get(thread.ident))}")
    return found


def _awaiting(coro: Any) -> types.FrameType | None:
    """The frame of the innermost coroutine `coro` awaits through."""
    frame = None
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frame


def _at(frame: types.FrameType | None) -> str:
    if frame is None:
        return ""
    return f" at {frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"


async def shut_down(runner: web.AppRunner, fixtures: list[FixtureRunner],
                    outbox: OutboxWorker | None, outbox_task: asyncio.Task[None] | None,
                    hurry: asyncio.Event) -> None:
    """Stop listening and take no new unit; requests in flight and units in the fixtures get
    their grace (`hurry`: none), abandoned units are journaled `interrupted`; then the outbox
    round in flight is journaled. The journal is closed by the caller."""
    for fixture in fixtures:
        fixture.stop()

    async def finish_fixtures() -> None:
        running = [f.task for f in fixtures if f.task is not None]
        if await finish(running, FIXTURE_GRACE, hurry):
            log.warning("stopping: abandoning the units still in the fixtures after %.0f s",
                        FIXTURE_GRACE)
            await asyncio.gather(*(f.abandon() for f in fixtures))

    await asyncio.gather(stop_http(runner), finish_fixtures())
    if outbox is not None and outbox_task is not None:
        outbox.stop()
        if await finish([outbox_task], OUTBOX_GRACE, hurry):
            log.warning("stopping: upstream round still in flight; what it did not journal "
                        "is sent again after the restart")
            outbox_task.cancel()
            await asyncio.gather(outbox_task, return_exceptions=True)


async def finish(tasks: list[asyncio.Task[None]], grace: float,
                 hurry: asyncio.Event) -> list[asyncio.Task[None]]:
    """Wait up to `grace` seconds (less once `hurry` is set) for `tasks`; returns those
    still running."""
    if not tasks:
        return []
    everything: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
    hurried: asyncio.Future[Any] = asyncio.ensure_future(hurry.wait())
    await asyncio.wait([everything, hurried], timeout=grace,
                       return_when=asyncio.FIRST_COMPLETED)
    hurried.cancel()
    return [t for t in tasks if not t.done()]


async def stop_http(runner: web.AppRunner) -> None:
    """Close the listening sockets and let requests in flight finish (HTTP_GRACE); once."""
    if runner.server is not None:
        await runner.cleanup()


async def start_upstream(config: StationConfig, journal: Journal,
                         stack: contextlib.AsyncExitStack,
                         secrets: ClaimSecrets | None = None) -> OutboxWorker | None:
    """The outbox worker for the configured upstream, or None without one."""
    upstream = config.upstream
    if not upstream.enabled:
        return None
    client = await upstream_client(config, stack)
    where = f"AWS IoT {upstream.region}" if upstream.kind == "aws-iot" else upstream.url
    log.info("units are registered at %s (%d at a time)", where, upstream.concurrency)
    return OutboxWorker(journal, client, concurrency=upstream.concurrency,
                        base=upstream.retry_base, cap=upstream.retry_cap, secrets=secrets,
                        credentials_hint=where_credentials_go(upstream.kind))


def start_fixtures(config: StationConfig, journal: Journal, maker: LabelMaker,
                   metrics: Metrics, outbox: OutboxWorker | None = None,
                   desk: ScanDesk | None = None) -> list[FixtureRunner]:
    """One running task per configured fixture; each keeps going whatever its units do."""
    runners = []
    desk = desk or ScanDesk()
    for fixture in config.fixtures:
        product = config.product(fixture.product)
        assert product is not None  # the config checked it
        steps = with_scans(unit_steps(product, maker, outbox, config.upstream),
                           fixture.scanning, desk, product)
        runner = FixtureRunner(fixture, product, journal, steps, metrics.observe_step)
        metrics.watch_fixture(runner.status)
        desk.add_fixture(runner.status)
        log.info("fixture %s: %s driver on %s at %d baud, product %s", fixture.name,
                 fixture.driver, fixture.port, fixture.baud, fixture.product)
        runner.start()
        runners.append(runner)
    return runners


def unit_steps(product: Product, maker: LabelMaker, outbox: OutboxWorker | None,
               settings: Upstream | None = None) -> list[Step]:
    """What a fixture does to each unit of `product`. A label only after the device file
    verified; a user-claimed unit's registration is queued with `verified`, a pre-claimed
    unit's (registration and pre-claim in one request) with its key; a RainMaker unit is
    claimed before its NVS partition is written (nothing is queued)."""
    if product.serialized_by == "agent":  # its agent got the UCI and the label over HTTP
        return [Identify(), CheckAgentFile()]
    steps: list[Step] = [Identify(), Issue(), Write()]
    if product.claim == "pre":
        assert outbox is not None  # the config checked it
        if isinstance(outbox.upstream, RainmakerUpstream):
            settings = settings or Upstream(kind="rainmaker")
            claim = ClaimNode(outbox.upstream, platform=settings.platform,
                              mqtt_cred_host=settings.mqtt_cred_host, base=settings.retry_base,
                              cap=settings.retry_cap)
            return [Identify(), Issue(), claim, Write(), Verify(), Label(maker)]
        return [*steps, Verify(), MakeKey(preclaim_request, outbox.wake), Label(maker),
                InstallCertificate(wait=product.preclaim_wait)]
    return [*steps, Verify(registration if outbox else None), Label(maker)]


def registration(run: UnitRun) -> RegisterRequest:
    """The outbox request a verified unit causes: register it upstream."""
    assert run.uci is not None
    return registration_for(run.product, run.uci, run.hardware_id, run.issued_at)


def preclaim_request(run: UnitRun, csr: str, key_id: str) -> PreclaimRequest:
    """The outbox request a unit's new key causes: register and pre-claim it."""
    assert run.uci is not None  # a pre-claimed product has no claim secret (the config)
    return PreclaimRequest(registration_for(run.product, run.uci, run.hardware_id,
                                            run.issued_at), run.product.account, csr, key_id)
