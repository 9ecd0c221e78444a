"""The unit edge's exception family. Each one fails that unit (never the station) and carries
a reason an operator can read on the status page, plus what to do about it."""

from __future__ import annotations


class UnitError(Exception):
    """A unit could not be provisioned; `reason` is plain words for the journal."""

    code = "unit-error"
    action = "check the unit and plug it in again"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PortBusy(UnitError):
    code = "port-busy"
    action = "close the other program that holds the port"


class PortMissing(UnitError):
    code = "port-missing"
    action = "check the fixture's cable and the port path in the config"


class UnitTimeout(UnitError):
    code = "timeout"
    action = "check the unit is powered and running its factory firmware"


class NotInBootloader(UnitTimeout):
    """A device is on the port but no chip answers its ROM bootloader's SYNC."""

    code = "no-sync"
    action = ("if a unit is in the fixture, put it in its bootloader (hold BOOT while "
              "pressing RESET, or plug it in with BOOT held); if the fixture has an "
              "auto-reset circuit, check its [fixtures.esptool] before")


class UnitGone(UnitError):
    code = "unplugged"
    action = "plug the unit in again; it resumes with the same UCI"


class ProtocolError(UnitError):
    code = "garbled"
    action = "check baud rate and cable; plug the unit in again"


class VerifyMismatch(UnitError):
    code = "verify-mismatch"
    action = "plug the unit in again to rewrite the file; replace the unit if it repeats"


class UnitRefused(UnitError):
    """The unit answered, but with an error status (disk full, bad path, ...)."""

    code = "unit-refused"
    action = "check the unit's storage and the configured path"


class IdentityConflict(UnitError):
    code = "identity-conflict"
    action = "set this unit aside for an engineer: its hardware id is bound to another product"


class UpstreamPending(UnitError):
    """The unit's certificate has not come back from the upstream within the wait."""

    code = "upstream-pending"
    action = ("put the unit aside and plug it in again later: the station keeps asking the "
              "upstream and writes the certificate then")


class PreclaimRefused(UnitError):
    """The upstream refused to pre-claim the unit (or answered a certificate that does not
    fit its key)."""

    code = "preclaim-refused"
    action = ("set the unit aside for an engineer: see the reason, fix it upstream, then "
              "`factory outbox retry UCI` and plug the unit in again")
