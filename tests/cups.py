"""A private CUPS daemon for tests, and the "printer" behind its queue.

`private_cups(tmp_path)` starts `cupsd -f` with its own config, spool, logs and port on
127.0.0.1 (never the machine's CUPS), adds a raw queue whose device is
`socket://127.0.0.1:PORT`, and `Device` is the asyncio TCP listener on that port: every
connection is one job, and its bytes are exactly what a label printer would have received.
Everything it starts is stopped on exit. Tests import it (no conftest fixture needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import grp
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Device:
    """A socket-protocol (port 9100 style) printer: each connection's bytes are one job."""

    port: int = field(default_factory=free_port)
    jobs: list[bytes] = field(default_factory=list)
    _server: asyncio.Server | None = field(default=None, init=False)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition, init=False)

    async def start(self) -> None:
        """Switch the printer on (same port, so the queue's device URI stays valid)."""
        self._server = await asyncio.start_server(self._receive, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def stop(self) -> None:
        """Switch the printer off: connections are refused until `start`."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def wait_jobs(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """The first `count` jobs received, waiting for them to arrive."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.jobs) >= count)
        return self.jobs[:count]

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # the socket backend closes its end after the last byte
        writer.close()
        async with self._arrived:
            self.jobs.append(data)
            self._arrived.notify_all()


@dataclass
class PrivateCups:
    """A running private cupsd: `server` is its host:port, `queue` a raw queue to `device`."""

    root: Path
    server: str
    queue: str
    device: Device

    async def admin(self, program: str, *args: str) -> str:
        """Run a CUPS admin/client program against this cupsd; fail the test on error."""
        proc = await asyncio.create_subprocess_exec(
            program, "-h", self.server, *args, env={**os.environ, "LC_ALL": "C"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise AssertionError(f"{program} {' '.join(args)} exited {proc.returncode}: {text}")
        return text

    async def add_queue(self, name: str, device_uri: str, model: str = "") -> None:
        """A queue to `device_uri` with the driver `model` (`lpinfo -m`), or raw."""
        # No `-m`: a PPD-less queue is raw (sends the file as is); `-m raw` does the same but
        # prints CUPS 2.4's "Raw queues are deprecated" warning.
        driver = ["-m", model] if model else []
        await self.admin("lpadmin", "-p", name, "-E", "-v", device_uri, *driver)

    async def disable(self, reason: str = "stopped by the test") -> None:
        await self.admin("cupsdisable", "-r", reason, self.queue)

    async def enable(self) -> None:
        await self.admin("cupsenable", self.queue)


def _configs(root: Path, port: int) -> tuple[Path, Path]:
    if os.getuid() == 0:  # cupsd refuses to run filters/backends as root: use Debian's lp
        user, group = "lp", "lp"
    else:  # unprivileged cupsd runs everything as the invoking user
        user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    files = root / "cups-files.conf"
    files.write_text(f"""\
ServerRoot {root}
RequestRoot {root}/spool
TempDir {root}/spool/tmp
CacheDir {root}/cache
StateDir {root}/state
ErrorLog {root}/log/error_log
AccessLog {root}/log/access_log
PageLog {root}/log/page_log
Printcap {root}/printcap
User {user}
Group {group}
SystemGroup {grp.getgrgid(os.getgid()).gr_name}
FileDevice No
""")
    conf = root / "cupsd.conf"
    conf.write_text(f"""\
Listen 127.0.0.1:{port}
Listen {root}/cups.sock
LogLevel debug
Browsing No
BrowseLocalProtocols none
WebInterface No
DefaultAuthType None
DefaultEncryption Never
<Location />
  Order allow,deny
  Allow from 127.0.0.1
</Location>
<Policy default>
  <Limit All>
    Order deny,allow
  </Limit>
</Policy>
""")
    return conf, files


async def _cupsd(*args: str, output: int | IO[bytes] = asyncio.subprocess.PIPE
                 ) -> asyncio.subprocess.Process:
    # Its own session, so stopping it can also end any backend it left behind.
    return await asyncio.create_subprocess_exec(
        "cupsd", *args, stdout=output, stderr=asyncio.subprocess.STDOUT, start_new_session=True)


async def _wait_ready(proc: asyncio.subprocess.Process, server: str, root: Path) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(START_TIMEOUT):
            while proc.returncode is None:
                probe = await asyncio.create_subprocess_exec(
                    "lpstat", "-h", server, "-r", env={**os.environ, "LC_ALL": "C"},
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
                out, _ = await probe.communicate()
                if out.strip() == b"scheduler is running":  # lpstat -r exits 0 either way
                    return
                await asyncio.sleep(0.05)
    log = root / "log" / "error_log"
    raise AssertionError(f"private cupsd on {server} is not up (exit {proc.returncode}):\n"
                         f"{log.read_text() if log.exists() else ''}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
    with contextlib.suppress(ProcessLookupError):  # a backend still running in its session
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.asynccontextmanager
async def private_cups(tmp_path: Path, queue: str = "labels") -> AsyncIterator[PrivateCups]:
    """A private cupsd with a raw `queue` to a running `Device`; its logs end up in tmp_path."""
    # Not under tmp_path: the spool must be reachable by the `lp` user that runs the socket
    # backend, and pytest's tmp dirs sit in a 0700 directory.
    root = Path(tempfile.mkdtemp(prefix="factory-cups-"))
    root.chmod(0o755)
    for sub in ("spool/tmp", "cache", "state", "log"):
        (root / sub).mkdir(parents=True)
    device = Device()
    await device.start()
    proc: asyncio.subprocess.Process | None = None
    try:
        for attempts_left in reversed(range(3)):  # a free port can be taken before cupsd binds
            port = free_port()
            conf, files = _configs(root, port)
            check = await _cupsd("-t", "-c", str(conf), "-s", str(files))
            out, _ = await check.communicate()
            if check.returncode != 0:
                raise AssertionError(f"cupsd -t rejects the private config: {out.decode()}")
            with (root / "log" / "cupsd.out").open("ab") as output:  # cupsd keeps its copy
                proc = await _cupsd("-f", "-c", str(conf), "-s", str(files), output=output)
            try:
                await _wait_ready(proc, f"127.0.0.1:{port}", root)
                break
            except AssertionError:
                await _stop(proc)
                if not attempts_left:
                    raise
        cups = PrivateCups(root, f"127.0.0.1:{port}", queue, device)
        await cups.add_queue(queue, f"socket://127.0.0.1:{device.port}")
        yield cups
    finally:
        if proc is not None:
            await _stop(proc)
        await device.stop()
        if (root / "log").exists():
            shutil.copytree(root / "log", tmp_path / "cups-log", dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)
