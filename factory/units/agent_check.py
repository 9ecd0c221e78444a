"""The fixture step for units their own agent serializes (`serialized_by = "agent"`): the
station gave the UCI over HTTP and made the label then; a fixture whose console reaches the
unit reads back the device file the agent wrote and checks it names that UCI, so the label
on the unit and the identity in it are known to match."""

from __future__ import annotations

from typing import Any

import json5

from factory.units.driver import UnitDriver
from factory.units.errors import ProtocolError, UnitError
from factory.units.pipeline import Ledger, UnitRun

MAX_DEVICE_FILE = 64 * 1024


class NotSerialized(UnitError):
    code = "not-serialized"
    action = ("check the unit's agent asks this station (services.serialize = \"factory\", "
              "api.serialize = the station's /ioto/serialize URL, the unit's mac in its "
              "device section), let it boot, and plug the unit in again")


class LabelMismatch(UnitError):
    code = "label-mismatch"
    action = ("set the unit aside: its label and its device file name different units; void "
              "the label's UCI ('factory void'), clear the unit's device file so its agent "
              "asks again, and reprint its label")


class IdMismatch(UnitError):
    code = "id-mismatch"
    action = ("clear the unit's device file so its agent asks this station again, and plug "
              "the unit in again")


class CheckAgentFile:
    """Read the agent-written device file back; its `id` must be the UCI the station gave
    this hardware id. `verified` is journaled without changing the unit's state (it is
    labelled, or further)."""

    name = "verifying"

    async def run(self, run: UnitRun, driver: UnitDriver, ledger: Ledger) -> None:
        assert run.hardware_id is not None
        mine = [u for u in await ledger.live_units_for_hardware(run.hardware_id)
                if u.product == run.product.id]
        if not mine:
            raise NotSerialized(f"no UCI was given to hardware id {run.hardware_id}: the "
                                "unit's agent has not asked this station for one")
        unit = await ledger.unit(mine[0].uci)  # with its events
        run.uci = unit.uci
        found = _device_id(await driver.read_file(run.device_path), run.device_path)
        if found != unit.uci:
            what = (f"{run.device_path} on the unit names {found!r}, but this station gave "
                    f"hardware id {run.hardware_id} the UCI {unit.uci}")
            if unit.last("labelled") is not None:
                raise LabelMismatch(f"{what}, and printed that UCI's label")
            raise IdMismatch(what)
        await ledger.record(unit.uci, "verified", run.actor,
                            {"algorithm": "agent-file-id", "path": run.device_path})
        run.log.append(f"{run.device_path} names UCI {unit.uci}, as its label does")


def _device_id(data: bytes, path: str) -> Any:
    if len(data) > MAX_DEVICE_FILE:
        raise ProtocolError(f"{path} on the unit is {len(data)} bytes: not a device file")
    try:
        section = json5.loads(data.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{path} on the unit is not JSON5: {exc}") from exc
    if not isinstance(section, dict) or "id" not in section:
        raise IdMismatch(f"{path} on the unit has no id: its agent was not serialized")
    return section["id"]
