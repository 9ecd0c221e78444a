"""systemd's notify protocol (sd_notify(3)): READY, STATUS, WATCHDOG and STOPPING datagrams
to $NOTIFY_SOCKET. Without that variable (not started by systemd) every call does nothing.

The watchdog is fed by a task on the main event loop, so a blocked loop stops the pings and
systemd restarts the service (WatchdogSec= in the unit).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, MutableMapping

log = logging.getLogger("factory.sdnotify")


class Notifier:
    """Speaks for this process to the service manager, or to nobody."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        # '@name' is a socket in the abstract namespace (a leading NUL byte on the wire).
        self._address = "\0" + address[1:] if address and address.startswith("@") else address
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """The notifier systemd set up for this process. The variables are taken out of the
        environment, so child processes (lp, a shell) never speak for the station."""
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None) or None
        usec_text = env.pop("WATCHDOG_USEC", "")
        pid_text = env.pop("WATCHDOG_PID", "")
        usec: int | None = None
        if usec_text.isascii() and usec_text.isdigit() and 0 < len(usec_text) < 19 and \
                int(usec_text) > 0:  # '²' is a digit to isdigit(), not to int()
            usec = int(usec_text)
        if pid_text and pid_text != str(os.getpid()):
            usec = None  # the watchdog is meant for another process (e.g. our parent)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> None:
        """Send one datagram of VAR=value lines; a failure is logged once, never raised."""
        if self._address is None:
            return
        message = "\n".join(a.replace("\n", " ") for a in assignments).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX,
                                             socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.setblocking(False)
            self._socket.sendto(message, self._address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify the service manager at %r: %s",
                            self._address.replace("\0", "@"), exc)
            self._failed = True
        else:
            self._failed = False

    def status(self, text: str) -> None:
        """What `systemctl status` shows as the service's status line."""
        self.notify(f"STATUS={text}")

    def ready(self, text: str) -> None:
        """Start-up is done: the service counts as started (Type=notify)."""
        self.notify("READY=1", f"STATUS={text}")

    def stopping(self, text: str) -> None:
        """Shutdown has begun."""
        self.notify("STOPPING=1", f"STATUS={text}")

    async def feed_watchdog(self, healthy: Callable[[], bool] = lambda: True) -> None:
        """Ping the watchdog every WatchdogSec/2 while `healthy()` holds; forever, so run
        it as a task. Without a watchdog it returns at once."""
        if self.watchdog_interval is None:
            return
        while True:
            if healthy():
                self.notify("WATCHDOG=1")
            else:
                log.error("not feeding the watchdog: the station is unhealthy")
            await asyncio.sleep(self.watchdog_interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
