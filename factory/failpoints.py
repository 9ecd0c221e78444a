"""Named crash points for the crash harness (tests/crash/, scripts/crash_campaign.py).

`FACTORY_FAILPOINTS="print.submitted=2,journal.commit=7"` makes the station kill itself with
SIGKILL the 2nd time it passes `print.submitted` and the 7th time it passes `journal.commit`:
a power cut at exactly that line, with nothing flushed or cleaned up. Without the variable
(every real station) `hit` is one dictionary test, and the station never reads it again.

Each point names a place where a crash could lose or repeat something: between a side effect
(a serial write, a print job, an upstream request) and the journal entry that records it.
"""

from __future__ import annotations

import os
import signal

from factory.states import STEP_NAMES

ENV = "FACTORY_FAILPOINTS"

# Every point the station passes, so the harness can choose among them and a typo is refused.
POINTS = frozenset({
    "journal.commit",      # the batch's statements are in, COMMIT not yet called
    "journal.committed",   # COMMIT returned, nobody told yet
    "api.issued",          # UCIs journaled, the HTTP response not yet sent
    # A unit's step is about to start (the steps before it are journaled), or all are done.
    *(f"step.{step}" for step in (*STEP_NAMES, "done")),
    "serial.write",        # between two chunks/commands of a device file write
    "scan.accepted",       # a scanned label passed its checks, `bound` not yet journaled
    "label.rendered",      # the label PDF is kept, `labelled` not yet journaled
    "print.submitted",     # CUPS took the job, `print_submitted` not yet journaled
    "print.done",          # CUPS printed the job, `printed` not yet journaled
    "outbox.sent",         # the upstream answered, the answer not yet journaled
    "outbox.registered",   # a pre-claim's registration is done, its CSR not yet sent
    "certificate.file",    # between the files of a pre-claimed unit's certificate install
})


class FailpointError(ValueError):
    """The failpoint setting names an unknown point or a count that is not a number."""


def parse(text: str) -> dict[str, int]:
    """`name=N,name=N` (N >= 1; a bare name means 1) as {name: N}."""
    points: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("=")
        if name not in POINTS:
            raise FailpointError(f"{ENV}: unknown failpoint {name!r}; known: "
                                 f"{', '.join(sorted(POINTS))}")
        try:
            points[name] = int(count or "1")
        except ValueError:
            raise FailpointError(f"{ENV}: {item!r}: the count must be a whole number") from None
        if points[name] < 1:
            raise FailpointError(f"{ENV}: {item!r}: the count starts at 1")
    return points


_armed: dict[str, int] = parse(os.environ.get(ENV, ""))


def hit(name: str) -> None:
    """Pass the point `name`: SIGKILL this process if it is armed and its count is up."""
    if not _armed or name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] == 0:
        os.write(2, f"failpoint {name}: killing the station (SIGKILL)\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
