"""A private PostgreSQL server for tests (Debian's `postgresql` package, never its service).

`PrivatePostgres.start()` runs initdb into a temporary directory and starts `postgres` on its
own port on 127.0.0.1 (and a Unix socket in that directory); `new_database()` makes an empty
database for one test and returns its URL. initdb and postgres refuse to run as root, and CI
runs as root: then both run as the `postgres` user the package creates, which owns the
directory. Everything is stopped and removed at `stop()`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cups import free_port

START_TIMEOUT = 30.0


def _bindir() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("no PostgreSQL server: apt-get install postgresql (scripts/test does)")
    return versions[-1].parent


def _as_owner(args: list[str]) -> list[str]:
    """Run as `postgres` when we are root (the server refuses root), else as ourselves."""
    return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else args


@dataclass
class PrivatePostgres:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="factory-pg-")))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        bindir = _bindir()
        if os.getuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.root.chmod(0o755)
        # --no-sync: the server syncs every commit (fsync and synchronous_commit stay on);
        # only initdb's own files go unsynced, and they die with the test run.
        subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                                  "-U", "postgres", "--no-sync", "-E", "UTF8",
                                  "--locale", "C"]),
                       check=True, capture_output=True, cwd="/")
        self.run()

    def run(self) -> None:
        """Start the server on its data directory (again, after `kill`), and wait until it
        takes connections."""
        bindir = _bindir()
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            _as_owner([str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                       "-k", str(self.root), "-c", "listen_addresses=127.0.0.1",
                       "-c", "max_connections=300", "-c", "synchronous_commit=on",
                       "-c", "fsync=on"]),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            ready = subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1",
                                    "-p", str(self.port)], check=False)
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        log_text = (self.root / "server.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"private postgres on port {self.port} did not start: {log_text}")

    def kill(self) -> None:
        """SIGKILL the server and every backend (a power cut, for the server): committed
        transactions are in its WAL, the rest is gone."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        # Backends die with the postmaster's group; wait until none holds the port.
        for _ in range(200):
            if subprocess.run([str(_bindir() / "pg_isready"), "-q", "-h", "127.0.0.1",
                               "-p", str(self.port)],
                              check=False).returncode != 0:
                break
            time.sleep(0.05)
        # As after a reboot: the dead postmaster's PID may linger unreaped (a zombie) where
        # nothing reaps orphans, and its lock files would keep `run` from starting.
        for stale in (self.data / "postmaster.pid", self.root / f".s.PGSQL.{self.port}.lock",
                      self.root / f".s.PGSQL.{self.port}"):
            stale.unlink(missing_ok=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql against this server (as the tests' own referee of it)."""
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-d", self.url(database), "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout

    def new_database(self) -> str:
        """An empty database of its own; returns its URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                # Immediate shutdown: no checkpoint of the run's many databases, which die
                # with it (a fast shutdown's checkpoint took 30 s at the end of the suite).
                os.killpg(self.proc.pid, signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
