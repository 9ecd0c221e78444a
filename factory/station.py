"""Wiring: open the journal, build the app, serve until SIGTERM, shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from factory.config import StationConfig
from factory.journal.sqlite import Journal
from factory.web.app import make_app

log = logging.getLogger("factory.station")


async def serve(config: StationConfig, *, access_log: bool = True) -> None:
    """Run the station until SIGTERM or SIGINT; queued journal writes finish before exit."""
    journal = await Journal.open(config.journal, config.station_id)
    runner = web.AppRunner(make_app(config, journal),
                           access_log=logging.getLogger("aiohttp.access") if access_log else None,
                           handle_signals=False)
    try:
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port, backlog=1024)
        await site.start()
        for host, port in (a[:2] for a in runner.addresses):
            log.info("station %s listening on http://%s:%d/ (journal %s)",
                     config.station_id, host, port, config.journal)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: finishing queued journal writes")
    finally:
        await runner.cleanup()
        await journal.close()
