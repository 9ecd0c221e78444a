"""Where every server of the project starts listening (the station, the fleet page, the
reference registry, the simulated clouds): a socket it cannot have is one line, not a
traceback."""

from __future__ import annotations

from aiohttp import web

from factory.listeners import cannot_listen


async def start_site(runner: web.AppRunner, host: str, port: int, option: str = "--listen",
                     *, backlog: int = 128) -> None:
    """Serve `runner` on host:port; raises `ListenError` naming `option` (the setting that
    chooses another address) when the address is in use, not this machine's, or not allowed."""
    site = web.TCPSite(runner, host, port, backlog=backlog)
    try:
        await site.start()
    except OSError as exc:  # socket.gaierror too: a host name that does not resolve
        raise cannot_listen(host, port, exc, option) from exc
