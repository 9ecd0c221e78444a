"""Benchmark UCI issuance: the real station against a naive baseline and a trivial handler.

Run it from the repository root with the project's virtualenv::

    .venv/bin/python scripts/bench_issue.py                   # defaults: 64 connections
    .venv/bin/python scripts/bench_issue.py --requests 50000 --batch-rounds 20
    .venv/bin/python scripts/bench_issue.py --client builtin  # force the Python client

What it measures, in one run:

1. Three HTTP servers, each a separate process on 127.0.0.1:
   * station: ``factory serve`` on a fresh temporary config and journal, loaded with
     ``POST /api/v1/ucis`` ``{"product": ...}`` under a device token (group commit, one
     durable journal transaction for everything queued meanwhile);
   * naive: a small aiohttp app in this file that parses the JSON body, draws a random id
     and does one plain ``sqlite3`` INSERT + COMMIT per request, synchronously in the handler
     (WAL, synchronous=FULL, like the station): one fsync per request;
   * trivial: an aiohttp handler that reads the body and returns a fixed small JSON: the
     ceiling of the HTTP stack on this machine.
2. The same concurrent load on each (``--connections``, keep-alive, after a warm-up):
   ``wrk`` with a Lua script when it is installed (``apt-get install wrk``; wrk runs for a
   fixed ``--duration``), otherwise a built-in aiohttp client in a separate process that sends
   a fixed ``--requests``. It reports requests/s, p50 and p99 latency, the status codes
   (every station answer must be a 201), and the server's CPU use per request.
3. Ratios: station/naive (target >= 3x) and station/trivial (target >= 0.7x).
4. Batch issuance: ``--batch-rounds`` sequential ``{"count": 10000}`` requests to the station,
   reported as UCIs/s (target >= 50,000 UCIs/s) and against the naive baseline's UCIs/s.
5. ``factory journal verify`` on the station's journal at the end, and a count of its units.
6. Fairness (``--only ... fairness``): singles while ``--fair-clients`` clients POST
   ``{"count": 10000}`` back to back for ``--fair-seconds``, on two fresh stations: one with
   the journal's bulk parts turned off (``--fair-baseline whole``: every batch in one
   transaction, one queue in arrival order, as before parts) and one as shipped. Reports
   single-issue p50/p99/max (target p99 < 50 ms), the ratio, and bulk UCIs/s of both.

Every server is stopped on exit, also on Ctrl-C. Exit status: 0 when the station answered
every request as expected and the journal verified, 1 otherwise (missed performance targets
are reported, not failed).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import math
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

PRODUCT = "BENCH-PRODUCT"
ISSUE_PATH = "/api/v1/ucis"
BATCH_SIZE = 10_000
TARGET_VS_NAIVE = 3.0
TARGET_VS_TRIVIAL = 0.7
TARGET_BATCH_UCIS = 50_000.0
RESULT_MARK = "BENCH_RESULT "
TARGET_FAIR_P99_MS = 50.0
# Starts `factory` with the journal's bulk parts turned off: every job is "small", so one
# queue in arrival order and whole batches up to 20,000 UCIs per transaction (the writer
# before parts). Only the benchmark does this; the station has no such setting.
_WHOLE_BATCHES = ("import sys; from factory.journal import queue; "
                  "queue.SMALL_JOB = queue.BULK_PART = queue.MAX_UNITS_PER_BATCH; "
                  "from factory.cli.app import main; sys.exit(main(sys.argv[1:]))")
# The same, with another size of part (--fair-part), to see what the size trades.
_PART_SIZE = ("import sys; from factory.journal import queue; "
              "queue.BULK_PART = {part}; "
              "from factory.cli.app import main; sys.exit(main(sys.argv[1:]))")


# -- the two comparison servers (run as `--serve-naive` / `--serve-trivial`) ----------------

def _naive_app(db_path: str) -> Any:
    """One plain sqlite3 INSERT + COMMIT per request, in the handler: one fsync per request."""
    from aiohttp import web

    conn = sqlite3.connect(db_path)  # implicit BEGIN before the INSERT, COMMIT by hand
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS ucis (uci TEXT PRIMARY KEY, product TEXT NOT NULL,"
                 " created_at TEXT NOT NULL)")
    conn.commit()

    async def issue(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response({"title": "bad JSON"}, status=400)
        product = body.get("product") if isinstance(body, dict) else None
        if not isinstance(product, str):
            return web.json_response({"title": "product is required"}, status=400)
        uci = base64.b32encode(secrets.token_bytes(10)).decode()
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        conn.execute("INSERT INTO ucis VALUES (?, ?, ?)", (uci, product, now))
        conn.commit()
        return web.json_response({"uci": uci, "product": product}, status=201)

    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_post(ISSUE_PATH, issue)
    return app


def _trivial_app() -> Any:
    """A fixed small JSON answer: what the HTTP stack alone costs."""
    from aiohttp import web

    payload = {"uci": "0123456789ABCDEF", "product": PRODUCT}

    async def issue(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(payload, status=201)

    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_post(ISSUE_PATH, issue)
    return app


async def _healthz(request: Any) -> Any:
    from aiohttp import web

    return web.json_response({"status": "ok"})


def _serve(app: Any, port: int) -> int:
    from aiohttp import web

    print(f"listening on http://127.0.0.1:{port}/", file=sys.stderr, flush=True)
    # The same listen backlog as the station (factory/station.py).
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=1024)
    return 0


# -- the built-in load client (run as `--client-run SPEC`) ----------------------------------

async def _client_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Send spec["requests"] POSTs over spec["connections"] keep-alive connections."""
    import aiohttp

    url: str = spec["url"]
    body: bytes = spec["body"].encode()
    headers: dict[str, str] = spec["headers"]
    connections: int = spec["connections"]
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def phase(total: int) -> float:
            remaining = total

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    start = time.perf_counter()
                    try:
                        async with session.post(url, data=body, headers=headers) as resp:
                            await resp.read()
                            status = resp.status
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        errors[type(exc).__name__] += 1
                        continue
                    latencies.append(time.perf_counter() - start)
                    statuses[str(status)] += 1

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            return time.perf_counter() - began

        elapsed = await phase(spec["requests"])
    latencies.sort()
    return {"requests": len(latencies), "seconds": elapsed, "statuses": dict(statuses),
            "errors": dict(errors), "p50_ms": _percentile(latencies, 50) * 1000,
            "p90_ms": _percentile(latencies, 90) * 1000,
            "p99_ms": _percentile(latencies, 99) * 1000,
            "max_ms": (latencies[-1] if latencies else math.nan) * 1000}


async def _fair_load(spec: dict[str, Any]) -> dict[str, Any]:
    """`bulk` clients POST count=10000 back to back while `singles` clients issue one UCI at
    a time, for `seconds`; the singles' latencies and the bulk UCIs/s."""
    import aiohttp

    url: str = spec["url"]
    headers = {"Content-Type": "application/json", **spec["headers"]}
    single_body = json.dumps({"product": PRODUCT}).encode()
    bulk_body = json.dumps({"product": PRODUCT, "count": BATCH_SIZE}).encode()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    bulk_ucis = 0
    connector = aiohttp.TCPConnector(limit=spec["bulk"] + spec["singles"])
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        deadline = began + spec["seconds"]

        async def bulk() -> None:
            nonlocal bulk_ucis
            while time.perf_counter() < deadline:
                async with session.post(url, data=bulk_body, headers=headers) as resp:
                    data = await resp.read()
                    statuses[f"bulk {resp.status}"] += 1
                    if resp.status == 201:
                        bulk_ucis += len(json.loads(data)["ucis"])

        async def single() -> None:
            await asyncio.sleep(0.5)  # the bulk clients are at work first
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with session.post(url, data=single_body, headers=headers) as resp:
                    await resp.read()
                    statuses[f"single {resp.status}"] += 1
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(bulk() for _ in range(spec["bulk"])),
                             *(single() for _ in range(spec["singles"])))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {"singles": len(latencies), "p50_ms": _percentile(latencies, 50) * 1000,
            "p99_ms": _percentile(latencies, 99) * 1000,
            "max_ms": (latencies[-1] if latencies else math.nan) * 1000,
            "bulk_ucis": bulk_ucis, "seconds": elapsed, "statuses": dict(statuses)}


def _fair_main(spec_json: str) -> int:
    result = asyncio.run(_fair_load(json.loads(spec_json)))
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


def _percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _client_main(spec_json: str) -> int:
    result = asyncio.run(_client_load(json.loads(spec_json)))
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# -- wrk --------------------------------------------------------------------------------------

_WRK_LUA = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
end

statuses = {{}}
function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {{}}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then
      for k, v in pairs(s) do counts[k] = (counts[k] or 0) + v end
    end
  end
  local parts = {{}}
  for k, v in pairs(counts) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p90_ms": %.3f, ' ..
    '"p99_ms": %.3f, "max_ms": %.3f, "statuses": {{%s}}, "errors": {{"connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d}}}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    table.concat(parts, ", "), e.connect, e.read, e.write, e.timeout))
end
"""


def _wrk_script(path: Path, body: str, token: str | None) -> None:
    # json.dumps of ASCII text is a valid Lua string literal.
    auth = (f'wrk.headers["Authorization"] = {json.dumps("Bearer " + token)}'
            if token else "")
    path.write_text(_WRK_LUA.format(body=json.dumps(body), auth=auth, mark=RESULT_MARK),
                    encoding="utf-8")


# -- orchestration ----------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{ISSUE_PATH}"


@dataclass
class LoadResult:
    server: str
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    errors: dict[str, int]
    server_cpu_s: float | None
    loop_cpu_s: float | None
    client_cpu_s: float
    warmup_statuses: dict[str, int] = field(default_factory=dict)
    warmup_errors: dict[str, int] = field(default_factory=dict)
    expected_status: str = "201"

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else math.nan

    @property
    def unexpected(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != self.expected_status)

    @property
    def non_2xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if not s.startswith("2"))

    @property
    def socket_errors(self) -> int:
        return sum(self.errors.values())


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    servers: list[Server] = field(default_factory=list)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    # -- processes --

    def spawn(self, name: str, cmd: list[str], port: int, token: str | None = None) -> Server:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=self.workdir,
                                    start_new_session=True)  # Ctrl-C reaches us, we stop it
        self.procs.append(proc)
        server = Server(name, proc, port, log, token)
        self.servers.append(server)
        return server

    def stop(self, server: Server, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        proc = server.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  ! {server.name} ignored SIGTERM for {timeout:.0f} s; killing it",
                      file=sys.stderr)
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def wait_ready(self, server: Server, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise BenchError(f"{server.name} exited with status {server.proc.returncode} "
                                 f"before it was ready:\n{_tail(server.log)}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
                conn.request("GET", "/healthz")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise BenchError(f"{server.name} not ready after {timeout:.0f} s:\n{_tail(server.log)}")

    # -- the station --

    def factory_cmd(self) -> list[str]:
        beside = Path(sys.executable).parent / "factory"
        if beside.exists():
            return [str(beside)]
        found = shutil.which("factory")
        return [found] if found else [sys.executable, "-m", "factory.cli"]

    def station_config(self, port: int, folder: Path | None = None) -> Path:
        config = (folder or self.workdir) / "station.toml"
        config.write_text(
            f'[station]\nid = "bench"\nlisten = "127.0.0.1:{port}"\n'
            f'journal = "journal.sqlite"\n\n[ioto]\nnetworks = ["127.0.0.0/8"]\n\n'
            f'[[products]]\nid = "{PRODUCT}"\nname = "Bench"\n', encoding="utf-8")
        return config

    def factory(self, config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.factory_cmd(), "-c", str(config), *argv],
                              capture_output=True, text=True, cwd=config.parent, check=False,
                              timeout=600)

    def start_station(self, name: str = "station", *, whole_batches: bool = False,
                      part: int | None = None) -> tuple[Server, Path]:
        port = _free_port()
        folder = self.workdir if name == "station" else self.workdir / name
        folder.mkdir(exist_ok=True)
        config = self.station_config(port, folder)
        made = self.factory(config, "token", "new", "--role", "device", "--name", "bench")
        if made.returncode != 0 or not made.stdout.strip():
            raise BenchError(f"'factory token new' failed ({made.returncode}):\n{made.stderr}")
        token = made.stdout.splitlines()[0].strip()
        factory = self.factory_cmd()
        if whole_batches:
            factory = [sys.executable, "-c", _WHOLE_BATCHES]
        elif part is not None:
            factory = [sys.executable, "-c", _PART_SIZE.format(part=int(part))]
        server = self.spawn(name, [*factory, "-c", str(config), "serve", "--no-access-log"],
                            port, token)
        return server, config

    # -- load --

    def load(self, server: Server, client: str) -> LoadResult:
        body = json.dumps({"product": PRODUCT})
        run = self._wrk if client == "wrk" else self._builtin
        warm = run(server, body, warmup=True) or {"statuses": {}, "errors": {}}
        pid = server.proc.pid
        before_server, before_loop = _process_cpu(pid), _process_cpu(pid, pid)
        before_children = _children_cpu()
        raw = run(server, body, warmup=False)
        client_cpu = _children_cpu() - before_children
        after_server, after_loop = _process_cpu(pid), _process_cpu(pid, pid)
        server_cpu = (after_server - before_server
                      if after_server is not None and before_server is not None else None)
        loop_cpu = (after_loop - before_loop
                    if after_loop is not None and before_loop is not None else None)
        if raw is None:
            raise BenchError("nothing to measure: --duration / --requests must be positive")
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} died under load (status {server.proc.returncode})"
                             f":\n{_tail(server.log)}")
        return LoadResult(server=server.name, requests=int(raw["requests"]),
                          seconds=float(raw["seconds"]), p50_ms=float(raw["p50_ms"]),
                          p90_ms=float(raw["p90_ms"]), p99_ms=float(raw["p99_ms"]),
                          max_ms=float(raw["max_ms"]),
                          statuses={str(k): int(v) for k, v in raw["statuses"].items()},
                          errors={k: int(v) for k, v in raw["errors"].items() if v},
                          server_cpu_s=server_cpu, loop_cpu_s=loop_cpu,
                          client_cpu_s=client_cpu,
                          warmup_statuses={str(k): int(v) for k, v in warm["statuses"].items()},
                          warmup_errors={k: int(v) for k, v in warm["errors"].items() if v})

    def _wrk(self, server: Server, body: str, *, warmup: bool) -> dict[str, Any] | None:
        seconds = self.args.warmup if warmup else self.args.duration
        if seconds <= 0:
            return None
        script = self.workdir / f"{server.name}.lua"
        _wrk_script(script, body, server.token)
        return self._run_client(["wrk", f"-t{self.args.wrk_threads}", f"-c{self.args.connections}",
                            "--timeout", "30s", "-s", str(script), f"-d{seconds}s",
                            server.url], "wrk warm-up" if warmup else "wrk")

    def _builtin(self, server: Server, body: str, *, warmup: bool) -> dict[str, Any] | None:
        count = self.args.warmup_requests if warmup else self.args.requests
        if count <= 0:
            return None
        headers = {"Content-Type": "application/json"}
        if server.token:
            headers["Authorization"] = f"Bearer {server.token}"
        spec = {"url": server.url, "body": body, "headers": headers,
                "connections": self.args.connections, "requests": count}
        return self._run_client([sys.executable, __file__, "--client-run", json.dumps(spec)],
                           "built-in client")

    def _run_client(self, cmd: list[str], what: str) -> dict[str, Any]:
        """Run a load client to its end; it is killed if we are interrupted meanwhile."""
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        try:
            stdout, stderr = proc.communicate(timeout=3600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.procs.remove(proc)
        for line in stdout.splitlines():
            if line.startswith(RESULT_MARK):
                result: dict[str, Any] = json.loads(line[len(RESULT_MARK):])
                return result
        raise BenchError(f"{what} failed (status {proc.returncode}):\n{stdout[-2000:]}"
                         f"\n{stderr[-2000:]}")

    # -- batches --

    def batches(self, server: Server) -> tuple[list[float], int, list[str]]:
        """Sequential count=10000 requests on one keep-alive connection."""
        body = json.dumps({"product": PRODUCT, "count": BATCH_SIZE})
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {server.token}"}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        times: list[float] = []
        seen: set[str] = set()
        problems: list[str] = []
        try:
            for i in range(self.args.batch_rounds):
                start = time.perf_counter()
                conn.request("POST", ISSUE_PATH, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                times.append(time.perf_counter() - start)
                if resp.status != 201:
                    problems.append(f"round {i + 1}: HTTP {resp.status}: {data[:300]!r}")
                    continue
                ucis = json.loads(data)["ucis"]
                if len(ucis) != BATCH_SIZE:
                    problems.append(f"round {i + 1}: {len(ucis)} UCIs, expected {BATCH_SIZE}")
                seen.update(ucis)
        finally:
            conn.close()
        return times, len(seen), problems


def fairness(bench: Bench, baseline: str) -> dict[str, dict[str, Any]]:
    """Singles under bulk load on a station writing whole batches, then on one writing parts."""
    args = bench.args
    results: dict[str, dict[str, Any]] = {}
    for name in ("whole", "parts"):
        server, config = bench.start_station(
            f"fair-{name}", whole_batches=name == "whole" == baseline,
            part=args.fair_part if name == "parts" else None)
        bench.wait_ready(server)
        spec = {"url": server.url, "headers": {"Authorization": f"Bearer {server.token}"},
                "bulk": args.fair_clients, "singles": args.fair_singles,
                "seconds": args.fair_seconds}
        print(f"fairness: {name} ({args.fair_clients} clients of count={BATCH_SIZE:,}, "
              f"{args.fair_singles} of singles, {args.fair_seconds} s) ...", flush=True)
        result = bench._run_client([sys.executable, __file__, "--fair-run", json.dumps(spec)],
                                   "fairness client")
        result["exit"] = bench.stop(server)
        verified = bench.factory(config, "journal", "verify")
        result["verify"] = (verified.stdout + verified.stderr).strip()
        result["verified"] = verified.returncode == 0
        results[name] = result
    return results


def _fair_report(results: dict[str, dict[str, Any]]) -> bool:
    rows = [["writer", "singles", "p50 ms", "p99 ms", "max ms", "bulk UCIs/s", "statuses"]]
    for name, r in results.items():
        rows.append([name, f"{r['singles']:,}", _fmt_ms(r["p50_ms"]), _fmt_ms(r["p99_ms"]),
                     _fmt_ms(r["max_ms"]), f"{r['bulk_ucis'] / r['seconds']:,.0f}",
                     " ".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items()))])
    print()
    for line in _table(rows, [False, True, True, True, True, True, False]):
        print(line)
    whole, parts = results["whole"], results["parts"]
    print(f"single p99, whole / parts: {whole['p99_ms'] / parts['p99_ms']:,.1f}x; parts p99 "
          f"{parts['p99_ms']:.1f} ms (target < {TARGET_FAIR_P99_MS:g} ms: "
          f"{'meets target' if parts['p99_ms'] < TARGET_FAIR_P99_MS else 'ABOVE target'})")
    print(f"bulk UCIs/s, parts / whole: "
          f"{parts['bulk_ucis'] / parts['seconds'] / (whole['bulk_ucis'] / whole['seconds']):.2f}x")
    ok = True
    for name, r in results.items():
        bad = {k: v for k, v in r["statuses"].items() if not k.endswith(" 201")}
        if bad or r["exit"] != 0 or not r["verified"]:
            ok = False
            print(f"FAIRNESS ERRORS ({name}): statuses {bad}, exit {r['exit']}, "
                  f"verify: {r['verify']}")
    return ok


class BenchError(Exception):
    """The benchmark could not run; the message says why."""




def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_cpu(pid: int, thread: int | None = None) -> float | None:
    """User + system CPU seconds of a process, all its threads (or one thread), Linux /proc."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _log_problems(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    pattern = re.compile(r"Traceback|\bERROR\b|\bWARNING\b|\bCRITICAL\b|Exception")
    return [line for line in text.splitlines() if pattern.search(line)]


def _git_version() -> str:
    """The commit benchmarked, '+changes' when factory/ differs from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "factory"], cwd=root,
                               check=True, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "(not a git checkout)"
    return head + (" +uncommitted changes in factory/" if dirty else "")


def _count_units(journal: Path) -> int | None:
    try:
        conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT count(*) FROM units").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return int(row[0])


# -- report -----------------------------------------------------------------------------------

def _fmt_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _table(rows: list[list[str]], right: Sequence[bool]) -> Iterator[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(row, widths, right, strict=True))

    yield line(rows[0])
    yield "  ".join("-" * w for w in widths)
    for row in rows[1:]:
        yield line(row)


def _load_table(results: list[LoadResult]) -> Iterator[str]:
    rows = [["server", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
             "non-2xx", "not 201", "sock err", "srv CPU", "loop CPU", "srv CPU/req"]]
    for r in results:
        cpu = "-" if r.server_cpu_s is None else f"{100 * r.server_cpu_s / r.seconds:.0f}%"
        loop = "-" if r.loop_cpu_s is None else f"{100 * r.loop_cpu_s / r.seconds:.0f}%"
        per = ("-" if r.server_cpu_s is None or not r.requests
               else f"{1e6 * r.server_cpu_s / r.requests:.0f} us")
        rows.append([r.server, f"{r.requests:,}", f"{r.rps:,.0f}", _fmt_ms(r.p50_ms),
                     _fmt_ms(r.p90_ms), _fmt_ms(r.p99_ms), _fmt_ms(r.max_ms), str(r.non_2xx),
                     str(r.unexpected), str(r.socket_errors), cpu, loop, per])
    yield from _table(rows, [False] + [True] * 12)


def _verdict(value: float, target: float) -> str:
    return "meets target" if value >= target else "BELOW target"


# -- main -------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark UCI issuance: station vs a naive one-fsync-per-request "
                    "baseline vs a trivial aiohttp handler.")
    parser.add_argument("--requests", type=int, default=20_000,
                        help="requests per server with the built-in client (default 20000)")
    parser.add_argument("--warmup-requests", type=int, default=1_000,
                        help="warm-up requests with the built-in client (default 1000)")
    parser.add_argument("--duration", type=int, default=10,
                        help="seconds per server with wrk, which is duration-based (default 10)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="warm-up seconds with wrk (default 2)")
    parser.add_argument("--connections", type=int, default=64,
                        help="concurrent keep-alive connections (default 64)")
    parser.add_argument("--wrk-threads", type=int, default=1,
                        help="wrk threads (default 1: leaves the other core to the server)")
    parser.add_argument("--batch-rounds", type=int, default=10,
                        help=f"sequential count={BATCH_SIZE} requests to the station (default 10)")
    parser.add_argument("--client", choices=("auto", "wrk", "builtin"), default="auto",
                        help="load client: wrk if installed (auto), or force one")
    parser.add_argument("--only", nargs="+", choices=("trivial", "naive", "station", "fairness"),
                        default=["trivial", "naive", "station", "fairness"],
                        help="servers to load, and the fairness runs")
    parser.add_argument("--fair-clients", type=int, default=20,
                        help=f"fairness: clients POSTing count={BATCH_SIZE} back to back "
                             "(default 20)")
    parser.add_argument("--fair-singles", type=int, default=4,
                        help="fairness: clients issuing singles meanwhile (default 4)")
    parser.add_argument("--fair-seconds", type=int, default=15,
                        help="fairness: seconds of bulk load per station (default 15)")
    parser.add_argument("--fair-part", type=int,
                        help="fairness: bulk UCIs per transaction on the 'parts' station "
                             "(default: as shipped, factory/journal/queue.py)")
    parser.add_argument("--fair-baseline", choices=("whole", "none"), default="whole",
                        help="fairness: 'whole' runs the first station with the journal's bulk "
                             "parts turned off (the baseline); 'none' runs both as shipped")
    parser.add_argument("--workdir", type=Path,
                        help="folder for the journal and databases (default: a temp dir; its "
                             "file system decides what an fsync costs)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    # Internal modes: the servers and the built-in client run as separate processes.
    parser.add_argument("--serve-naive", nargs=2, metavar=("PORT", "DBPATH"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--serve-trivial", metavar="PORT", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-run", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--fair-run", metavar="SPEC", help=argparse.SUPPRESS)
    return parser


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.serve_naive:
        return _serve(_naive_app(args.serve_naive[1]), int(args.serve_naive[0]))
    if args.serve_trivial is not None:
        return _serve(_trivial_app(), args.serve_trivial)
    if args.client_run:
        return _client_main(args.client_run)
    if args.fair_run:
        return _fair_main(args.fair_run)

    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "builtin"
    elif client == "wrk" and not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    # Clean up on Ctrl-C and SIGTERM, even if started with SIGINT ignored (`cmd &`).
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="bench-issue-", dir=args.workdir))
    else:
        workdir = Path(tempfile.mkdtemp(prefix="bench-issue-"))
    bench = Bench(args, workdir)
    try:
        return _run(bench, client)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the servers", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench_issue: {exc}", file=sys.stderr)
        return 2
    finally:
        bench.stop_all()
        if args.keep:
            print(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(bench: Bench, client: str) -> int:
    args = bench.args
    me = [sys.executable, __file__]
    station, config = bench.start_station()
    naive = bench.spawn("naive", [*me, "--serve-naive", str(port := _free_port()),
                                  str(bench.workdir / "naive.sqlite")], port)
    trivial = bench.spawn("trivial", [*me, "--serve-trivial", str(port := _free_port())], port)
    for server in (station, naive, trivial):
        bench.wait_ready(server)

    if client == "wrk":
        how = (f"wrk ({shutil.which('wrk')}), {args.wrk_threads} thread(s), "
               f"{args.connections} keep-alive connections, fixed DURATION: {args.warmup} s "
               f"warm-up + {args.duration} s measured per server (--requests is ignored: wrk "
               "is duration-based)")
    else:
        how = (f"built-in aiohttp client (separate process; wrk not installed or not chosen), "
               f"{args.connections} keep-alive connections, {args.warmup_requests:,} warm-up "
               f"+ {args.requests:,} measured requests per server")
    print(f"UCI issuance benchmark: {os.cpu_count()} CPUs, Python "
          f"{sys.version.split()[0]}, code {_git_version()}, work folder {bench.workdir}")
    print(f"client: {how}")
    print("body: POST /api/v1/ucis {\"product\": \"BENCH-PRODUCT\"}; station with a device "
          "token\n")

    by_name = {"trivial": trivial, "naive": naive, "station": station}
    results: dict[str, LoadResult] = {}
    for name in ("trivial", "naive", "station"):
        if name not in args.only:
            continue
        print(f"loading {name} ...", flush=True)
        results[name] = bench.load(by_name[name], client)
    print()
    for line in _load_table(list(results.values())):
        print(line)
    client_cpu = ", ".join(f"{r.server} {100 * r.client_cpu_s / r.seconds:.0f}%"
                           for r in results.values() if r.seconds > 0)
    print("(latency as seen by the client; srv CPU: the server process, all threads, during "
          "the measured run;\n loop CPU: its main thread, which runs the event loop, 100% = "
          f"saturated; client CPU: {client_cpu})")

    ok = True
    st, nv, tv = results.get("station"), results.get("naive"), results.get("trivial")
    print()
    if st and nv:
        ratio = st.rps / nv.rps
        print(f"station / naive    req/s: {ratio:6.2f}x  (target >= {TARGET_VS_NAIVE:g}x: "
              f"{_verdict(ratio, TARGET_VS_NAIVE)})")
    if st and tv:
        ratio = st.rps / tv.rps
        print(f"station / trivial  req/s: {ratio:6.2f}x  (target >= {TARGET_VS_TRIVIAL:g}x: "
              f"{_verdict(ratio, TARGET_VS_TRIVIAL)})")
    if st:
        warm_bad = sum(n for s, n in st.warmup_statuses.items() if s != st.expected_status)
        if st.non_2xx or st.unexpected or st.socket_errors or warm_bad or st.warmup_errors:
            ok = False
            print(f"STATION ERRORS under load: measured run statuses {st.statuses}, socket "
                  f"errors {st.errors or 'none'}; warm-up statuses {st.warmup_statuses}, "
                  f"socket errors {st.warmup_errors or 'none'}")
        else:
            print(f"station load: all {st.requests:,} measured responses and all "
                  f"{sum(st.warmup_statuses.values()):,} warm-up responses were 201")

    batch_ucis = 0
    if args.batch_rounds > 0:
        print(f"\nbatch issuance: {args.batch_rounds} sequential POSTs of count={BATCH_SIZE:,} "
              "to the station (one keep-alive connection)")
        times, unique, problems = bench.batches(station)
        good = args.batch_rounds - len(problems)
        batch_ucis = good * BATCH_SIZE
        rate = batch_ucis / sum(times) if times else math.nan
        print(f"  per request: min {min(times) * 1000:.0f} ms, median "
              f"{sorted(times)[len(times) // 2] * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
        print(f"  batch UCIs/s: {rate:,.0f}  (target >= {TARGET_BATCH_UCIS:,.0f}: "
              f"{_verdict(rate, TARGET_BATCH_UCIS)}); {unique:,} distinct UCIs of "
              f"{batch_ucis:,}")
        if nv:
            print(f"  batch UCIs/s / naive UCIs/s ({nv.rps:,.0f}, one per request): "
                  f"{rate / nv.rps:,.1f}x")
        if problems or unique != batch_ucis:
            ok = False
            for problem in problems:
                print(f"  BATCH ERROR {problem}")

    # Stop the station (queued writes finish), then check its journal.
    status = bench.stop(station)
    print(f"\nstation stopped (exit status {status})")
    if status != 0:
        ok = False
    problems = _log_problems(station.log)
    if problems:
        ok = False
        print(f"station log: {len(problems)} error/warning lines, first ones:")
        for line in problems[:10]:
            print(f"  {line}")
        print(f"  (log: {station.log})")
    else:
        print("station log: no errors or warnings")
    verified = bench.factory(config, "journal", "verify")
    print(f"factory journal verify (exit {verified.returncode}): "
          f"{(verified.stdout + verified.stderr).strip()}")
    if verified.returncode != 0:
        ok = False
    units = _count_units(config.parent / "journal.sqlite")
    if st is not None and units is not None:
        answered = st.statuses.get("201", 0) + st.warmup_statuses.get("201", 0) + batch_ucis
        print(f"units in the journal: {units:,}; 201 answers seen (warm-up + measured) + "
              f"batch UCIs: {answered:,}"
              + (f" (+{units - answered} issued for requests still in flight when wrk stopped)"
                 if units > answered else ""))
        if units < answered:
            ok = False
            print("  MISSING UNITS: the station answered 201 for more UCIs than it journalled")
    if "fairness" in args.only and args.fair_clients > 0:
        print()
        ok = _fair_report(fairness(bench, args.fair_baseline)) and ok
    print("\nresult: " + ("OK" if ok else "PROBLEMS (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
