"""Warnings the station noticed while it served, that neither the journal nor a fixture's state
holds (an Ioto agent serializing a unit without a hardware id): shown in the attention banner,
with how often, until the station restarts."""

from __future__ import annotations

from dataclasses import dataclass

from factory.status.attention import Alert


@dataclass
class _Notice:
    what: str
    action: str
    count: int = 1


class Notices:
    """The latest warning of each source and how often it came; `version` changes with each."""

    def __init__(self) -> None:
        self._notices: dict[str, _Notice] = {}
        self.version = 0

    def note(self, source: str, what: str, action: str) -> None:
        """One more occurrence of `source`'s warning."""
        notice = self._notices.get(source)
        if notice is None:
            self._notices[source] = _Notice(what, action)
        else:
            notice.what, notice.action = what, action
            notice.count += 1
        self.version += 1

    def alerts(self) -> list[Alert]:
        return [Alert(source, f"{n.what} ({n.count} since the station started)", n.action)
                for source, n in self._notices.items()]
