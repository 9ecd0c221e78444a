"""One home for the station's names: the states a unit and a fixture can be in.

Everything else derives from these (the API's checks, the OpenAPI enums, the metrics, the status
page's words); adding a step or a state means editing this module plus the code that acts on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, get_args

FixtureState = Literal["starting", "waiting", "identifying", "issuing", "writing", "verifying",
                       "keying", "certifying", "labelling", "done", "failed", "port-error"]
FIXTURE_STATES: tuple[FixtureState, ...] = get_args(FixtureState)


@dataclass
class FixtureStatus:
    """What the status page and the logs show for one fixture."""

    name: str
    port: str
    state: str = "starting"  # one of FIXTURE_STATES
    reason: str = ""
    action: str = ""
    uci: str | None = None
    since: float = field(default_factory=time.time)
    done: int = 0
    failed: int = 0

    def set(self, state: str, reason: str = "", action: str = "",
            uci: str | None = None) -> None:
        self.state, self.reason, self.action, self.uci = state, reason, action, uci
        self.since = time.time()
