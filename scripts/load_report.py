"""`scripts/load.py`'s measurements of the station process (/proc) and its report."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def sample_process(pid: int) -> dict[str, float]:
    """RSS and its peak (VmHWM) in KiB, open descriptors and CPU seconds used so far."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as status:
        for row in status:
            key, _, value = row.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = float(value.split()[0])
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name (which may hold spaces): utime, stime are 14 and 15.
        rest = stat.read().rpartition(")")[2].split()
    cpu = (int(rest[11]) + int(rest[12])) / CLOCK_TICKS
    return {"rss_kib": fields["VmRSS"], "hwm_kib": fields["VmHWM"],
            "fds": float(len(os.listdir(f"/proc/{pid}/fd"))), "cpu_s": cpu}


def _tcp_sockets() -> dict[str, tuple[int, int]]:
    """Every TCP socket on the machine: inode -> (local port, state; 10 is LISTEN)."""
    found: dict[str, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                cols = row.split()
                found[cols[9]] = (int(cols[1].rsplit(":", 1)[1], 16), int(cols[3], 16))
    return found


def fd_kinds(pid: int, port: int) -> dict[str, int]:
    """Open descriptors by what they are: pty, pipe, file, and sockets told apart as the
    listener, connections from clients (to `port`), other TCP (the upstream) and the rest."""
    kinds: Counter[str] = Counter()
    tcp = _tcp_sockets()
    folder = f"/proc/{pid}/fd"
    for fd in os.listdir(folder):
        try:
            target = os.readlink(f"{folder}/{fd}")
        except FileNotFoundError:
            continue  # closed while we looked
        if target.startswith("socket:"):
            local, state = tcp.get(target[8:-1], (0, 0))
            kinds["listener" if state == 10 else "client conn" if local == port and local
                  else "other tcp" if local else "socket"] += 1
        elif target.startswith(("/dev/pts/", "/dev/ptmx")):
            kinds["pty"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds[target.split(":", 1)[1].strip("[]")] += 1
        else:
            kinds["file"] += 1
    return dict(sorted(kinds.items()))


def flatness(series: list[dict[str, float]], before: dict[str, float],
             after: dict[str, float], before_kinds: dict[str, int],
             after_kinds: dict[str, int], fixtures: int,
             upstream_concurrency: int = 4) -> dict[str, Any]:
    """Whether memory and descriptors stay flat: the slope of RSS over the second half of the
    run (least squares), and descriptors before the load against after it (once every
    client has gone; a fixture may hold its port or not at either moment)."""
    half = [s for s in series if s["t"] >= series[-1]["t"] / 2] if series else []
    slope = None
    if len(half) >= 3 and len({s["t"] for s in half}) > 1:
        slope = statistics.linear_regression([s["t"] for s in half],
                                             [s["rss_kib"] for s in half]).slope
    span = (half[-1]["t"] - half[0]["t"]) if half else 0.0
    growth = (slope or 0.0) * span  # KiB over the second half at that slope
    mean_rss = statistics.fmean(s["rss_kib"] for s in half) if half else 0.0
    rss_flat = slope is not None and growth <= max(2048.0, 0.02 * mean_rss)
    # A fixture may hold its port or not at either moment (an open port is its tty and
    # pyserial's two abort pipes, four fds), and the upstream client keeps idle connections
    # a while; everything else must be back to what it was.
    loose = {"pty": fixtures, "pipe": 4 * fixtures, "other tcp": upstream_concurrency}
    fds_flat = all(abs(after_kinds.get(k, 0) - before_kinds.get(k, 0)) <= loose.get(k, 0)
                   for k in set(before_kinds) | set(after_kinds))
    return {
        "rss_first_kib": series[0]["rss_kib"] if series else None,
        "rss_last_kib": series[-1]["rss_kib"] if series else None,
        "rss_max_kib": max(s["rss_kib"] for s in series) if series else None,
        "rss_slope_kib_per_min_second_half": None if slope is None else round(slope * 60, 1),
        "rss_growth_second_half_kib": round(growth, 1),
        "fds_before_load": before["fds"], "fds_after_load": after["fds"],
        "fds_first": series[0]["fds"] if series else None,
        "fds_last": series[-1]["fds"] if series else None,
        "fds_max": max(s["fds"] for s in series) if series else None,
        "rss_flat": rss_flat, "fds_flat": fds_flat,
        "verdict": _verdict(slope, rss_flat, fds_flat),
    }


def _verdict(slope: float | None, rss_flat: bool, fds_flat: bool) -> str:
    fds = "descriptors back to where they were" if fds_flat else \
        "NOT FLAT: descriptors after the load differ from before it"
    if slope is None:
        return f"RSS not judged (too short: under 3 samples in the second half); {fds}"
    if not rss_flat:
        return f"NOT FLAT: RSS grows over the second half; {fds}"
    return "flat" if fds_flat else fds


def _mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def print_report(r: dict[str, Any], soak: bool) -> None:
    """The readable table."""
    issue, events, fx, st, fl = (r["issue"], r["events"], r["fixtures_result"], r["station"],
                                 r["flatness"])
    print(f"\n{r['command']}")
    print(f"{r['duration_s']} s, {r['clients']} clients"
          + (f" (limited to {r['rate_limit_req_s']:g} req/s)" if r["rate_limit_req_s"] else "")
          + f", {r['viewers']} viewers, {r['fixtures']} fixtures (a unit every "
          f"{r['arrive_every_s']:g} s each), registry {'on' if r['registry'] else 'off'}, "
          + (f"journal prefilled with {r['prefilled_ucis']:,} UCIs, " if r["prefilled_ucis"]
             else "") +
          f"{r['cpus']} CPUs shared with everything else (figures are noisy)\n")
    rows = [
        ("UCIs issued", f"{issue['ucis']:,} ({issue['ucis_per_s']:,.0f}/s) in "
                        f"{issue['requests']:,} requests ({issue['requests_per_s']:,.0f}/s)"),
        ("issue latency", f"p50 {issue['p50_ms']} ms, p99 {issue['p99_ms']} ms"),
    ]
    for kind, k in issue["by_kind"].items():
        rows.append((f"  {kind}", f"{k['requests']:,} requests, p50 {k['p50_ms']} ms, "
                                  f"p99 {k['p99_ms']} ms"))
    rows += [
        ("SSE events", f"{events['delivered']:,} ({events['per_s']:,.1f}/s) to "
                       f"{r['viewers']} viewers ({events['per_viewer_min']}-"
                       f"{events['per_viewer_max']} each, {events['connects']} connects)"),
        ("SSE lag", f"p50 {events['lag_p50_ms']} ms, p99 {events['lag_p99_ms']} ms "
                    "(snapshot built -> read)"),
        ("units provisioned", f"{fx['provisioned']:,} labelled ({fx['units_per_min']:.1f}/min); "
                              "per fixture " + ", ".join(
                                  f"{k} {v}" for k, v in fx["labelled_in_window"].items())),
        ("unit failures", str(fx["unit_failures"])),
        ("label PDFs kept", f"{fx['label_pdfs']:,}"),
        ("registered", f"{fx['registered']:,}, outbox {fx['outbox'] or '{}'}"),
        ("journal", f"{fx['missing_in_journal']} received UCIs missing, "
                    f"{fx['duplicates_received']} received twice; verify: "
                    f"{st['journal_verify']}"),
        ("station RSS", f"before {_mib(st['before']['rss_kib'])}, after "
                        f"{_mib(st['after']['rss_kib'])}, peak (VmHWM) "
                        f"{_mib(st['peak_rss_kib'])}"),
        ("station fds", f"before {st['before']['fds']:.0f} {st['before']['fd_kinds']}, max "
                        f"{st['max_fds']:.0f}, after {st['after']['fds']:.0f} "
                        f"{st['after']['fd_kinds']}"),
        ("station CPU", f"{st['cpu_s']:.1f} s ({st['cpu_s'] / r['duration_s'] * 100:.0f}% "
                        "of one core); the load generator "
                        f"{st['load_generator_cpu_s']:.1f} s"),
        ("station exit", str(st["exit_code"])),
        ("errors", ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if soak:
        print(f"\n{'t s':>7} {'RSS MiB':>8} {'HWM MiB':>8} {'fds':>5} {'CPU s':>7} "
              f"{'UCIs':>10} {'events':>9}")
        for s in r["series"]:
            print(f"{s['t']:>7.0f} {s['rss_kib'] / 1024:>8.1f} {s['hwm_kib'] / 1024:>8.1f} "
                  f"{s['fds']:>5.0f} {s['cpu_s']:>7.1f} {s['ucis']:>10,.0f} "
                  f"{s['events']:>9,.0f}")
    print(f"\nRSS first {_mib(fl['rss_first_kib'])}, last {_mib(fl['rss_last_kib'])}, max "
          f"{_mib(fl['rss_max_kib'])}; slope over the second half "
          f"{fl['rss_slope_kib_per_min_second_half']} KiB/min "
          f"({fl['rss_growth_second_half_kib']:.0f} KiB over it)")
    print(f"fds first {fl['fds_first']}, last {fl['fds_last']}, max {fl['fds_max']}; before "
          f"the load {fl['fds_before_load']:.0f}, after it {fl['fds_after_load']:.0f}")
    print(f"verdict: {fl['verdict']}")
