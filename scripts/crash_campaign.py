#!/usr/bin/env python3
"""Crash campaign: thousands of SIGKILLs of a running line's station, then a table of kill
points x invariants held.

The line (tests/crash/line.py: a real `factory serve`, the reference registry, a private CUPS,
a console and a framed simulated unit, an API client) runs in cycles. Each cycle kills the
station `--per-cycle` times, each time at a failpoint chosen at random (factory/failpoints.py,
at its 1st to 4th pass) or, for a share of kills, at a random moment from outside; then the
station runs until every unit is finished and nothing is owed, and every invariant is
checked. A cycle that breaks one is printed in full and the next cycle starts on a new line.

    .venv/bin/python scripts/crash_campaign.py --kills 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tqdm import tqdm  # noqa: E402

from factory import failpoints  # noqa: E402
from tests.crash.line import Line, line_up  # noqa: E402

RANDOM = "(random moment)"


def choose(rng: random.Random, random_share: float) -> tuple[str, str, float | None]:
    """(row of the table, FACTORY_FAILPOINTS, seconds before an outside kill)."""
    if rng.random() < random_share:
        return RANDOM, "", rng.uniform(0.3, 4.0)
    point = rng.choice(sorted(failpoints.POINTS))
    return point, f"{point}={rng.randint(1, 4)}", None


async def campaign(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    chosen: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    held: dict[str, Counter[str]] = defaultdict(Counter)  # point -> invariant -> cycles held
    checked: Counter[str] = Counter()  # point -> cycles checked
    broken: list[dict[str, object]] = []
    invariants: list[str] = []
    started = time.monotonic()
    kills = 0
    progress = tqdm(total=args.kills, unit="kill", desc="crash campaign")
    with tempfile.TemporaryDirectory(prefix="crash-campaign-") as tmp:
        folder_no = 0
        while kills < args.kills:
            folder_no += 1
            folder = Path(tmp) / f"line-{folder_no:03d}"
            folder.mkdir()
            async with line_up(folder) as line:
                for _ in range(args.cycles_per_line):
                    if kills >= args.kills:
                        break
                    try:
                        points = await cycle(line, rng, args, chosen, reached)
                    except StuckLine as exc:  # stuck: a finding, and a new line
                        broken.append({"line": str(folder), "kills": exc.points,
                                       "broken": {"the line finishes": str(exc)[-3000:]}})
                        progress.write(json.dumps(broken[-1], indent=1))
                        kills += len(exc.points)
                        break
                    kills += len(points)
                    progress.update(len(points))
                    result = line.check()
                    invariants = invariants or list(result)
                    for point in set(points):
                        checked[point] += 1
                        for name, why in result.items():
                            held[point][name] += not why
                    if any(result.values()):
                        broken.append({"line": str(folder), "kills": points,
                                       "broken": {k: v for k, v in result.items() if v},
                                       "rounds": [r.failpoints or r.ended
                                                  for r in line.rounds[-len(points) - 1:]]})
                        progress.write(json.dumps(broken[-1], indent=1))
                        break  # a new line: later cycles are not blamed for this one
    progress.close()
    minutes = (time.monotonic() - started) / 60
    print(table(chosen, reached, checked, held, invariants))
    print(f"\n{kills} kills in {minutes:.1f} min; {sum(reached.values())} reached their "
          f"point; {len(broken)} cycles broke an invariant")
    if args.json:
        write_json(args.json, {
            "kills": kills, "minutes": round(minutes, 1), "seed": args.seed,
            "chosen": chosen, "reached": reached, "checked": checked,
            "held": {p: dict(c) for p, c in held.items()}, "broken": broken})
    return 1 if broken else 0


def write_json(path: str, figures: dict[str, object]) -> None:
    Path(path).write_text(json.dumps(figures, indent=1))


async def cycle(line: Line, rng: random.Random, args: argparse.Namespace,
                chosen: Counter[str], reached: Counter[str]) -> list[str]:
    """Kill the station `per_cycle` times, then let it finish; the points chosen."""
    points: list[str] = []
    try:
        for _ in range(args.per_cycle):
            point, spec, after = choose(rng, args.random_share)
            points.append(point)
            result = await line.run(spec, kill_after=after, limit=30)
            chosen[point] += 1
            reached[point] += result.ended in ("failpoint", "timer")
        finished = await line.finish(limit=120)
    except AssertionError as exc:
        raise StuckLine(points, str(exc)) from exc
    if finished.ended != "finished":
        raise StuckLine(points, f"the station ended {finished.ended}: {finished.log[-2000:]}")
    return points


class StuckLine(Exception):
    """The line did not finish its units after a cycle's kills."""

    def __init__(self, points: list[str], message: str) -> None:
        super().__init__(message)
        self.points = points


def table(chosen: Counter[str], reached: Counter[str], checked: Counter[str],
          held: dict[str, Counter[str]], invariants: list[str]) -> str:
    short = [f"I{n}" for n in range(1, len(invariants) + 1)]
    head = f"{'kill point':<20} {'chosen':>7} {'reached':>8} {'cycles':>7} " + " ".join(
        f"{s:>7}" for s in short)
    lines = [head, "-" * len(head)]
    for point in [*sorted(failpoints.POINTS), RANDOM]:
        if not chosen[point]:
            continue
        cells = " ".join(f"{held[point][name]:>3}/{checked[point]:<3}" for name in invariants)
        lines.append(f"{point:<20} {chosen[point]:>7} {reached[point]:>8} "
                     f"{checked[point]:>7} {cells}")
    lines.append("")
    lines += [f"{s}: {name}" for s, name in zip(short, invariants, strict=True)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs in all (default 200)")
    parser.add_argument("--per-cycle", type=int, default=3,
                        help="kills before each check of the invariants (default 3)")
    parser.add_argument("--cycles-per-line", type=int, default=25,
                        help="cycles on one line before a fresh one (default 25)")
    parser.add_argument("--random-share", type=float, default=0.25,
                        help="share of kills at a random moment from outside (default 0.25)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    return asyncio.run(campaign(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
