"""`factory provision` and `factory sim-unit`: one unit on a port, real or simulated."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import sys
from pathlib import Path

from factory import uci as uci_codec
from factory.cli.common import CliError, Subcommands, command, with_journal
from factory.config import StationConfig
from factory.config.drivers import AFTER, BEFORE, ConsoleSettings, EsptoolSettings
from factory.journal.interface import Journal


def register(sub: Subcommands) -> None:
    p = command(sub, "provision", cmd_provision,
                "Provision one unit on a port now, printing each step (no server needed).")
    p.add_argument("--port", required=True, help="device path or socket://HOST:PORT")
    p.add_argument("--driver", required=True, help="console, framed or esptool")
    p.add_argument("--product", required=True, help="product id from the config")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--path", default="config/device.json5", help="device.json5 on the unit")
    p.add_argument("--identify-command", metavar="CMD",
                   help="console units: what prints the unit's hardware id, as a fixture's "
                        f"identify_command (default: {ConsoleSettings().identify_command})")
    esp = EsptoolSettings()
    p.add_argument("--before", choices=BEFORE, default=esp.before,
                   help="esptool units: how the chip gets into its bootloader, as a fixture's "
                        "[fixtures.esptool] before (a port without modem lines: no-reset)")
    p.add_argument("--after", choices=AFTER, default=esp.after,
                   help="esptool units: what the chip does once verified, as a fixture's "
                        "after (no modem lines: soft-reset runs the application)")
    p.add_argument("--flash-baud", type=int, default=esp.flash_baud, metavar="BAUD",
                   help="esptool units: the rate the flasher stub is switched to")

    p = command(sub, "sim-unit", cmd_sim_unit,
                "Run a simulated unit on a new pseudo-terminal (prints its path).")
    p.add_argument("--driver", required=True, choices=("console", "framed", "esptool"))
    p.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (default)")
    p.add_argument("--root", required=True, type=Path, help="folder holding the unit's files")
    p.add_argument("--link", type=Path, help="also make this symlink to the pty")
    p.add_argument("--baud", type=int, default=115200,
                   help="pace bytes like a wire at this rate (0: as fast as the pty goes)")
    p.add_argument("--hardware-id", default="7c:df:a1:00:03:3b", help="the unit's MAC")
    p.add_argument("--model", default="SIM-1")
    p.add_argument("--arrive-every", type=float, metavar="SECONDS",
                   help="unplug the unit after SECONDS and plug in a new one (a random MAC, "
                        "its own folder under --root), again and again: a line in motion")
    p.add_argument("--no-keygen", action="store_true",
                   help="a unit that cannot make its own key pair (no KEYGEN command, no "
                        "openssl in its shell): the station makes it")
    p.add_argument("--silent", action="store_true", help="misbehave: never answer")
    p.add_argument("--garbage", action="store_true", help="misbehave: answer random bytes")
    p.add_argument("--drop-rate", type=float, default=0.0, help="misbehave: drop bytes")
    p.add_argument("--corrupt-next", type=int, default=0,
                   help="misbehave: corrupt the next N answers")
    p.add_argument("--hangup-after", type=int, help="misbehave: unplug after N bytes in")
    p.add_argument("--corrupt-storage", action="store_true",
                   help="misbehave: store a file that differs from what was sent")
    from factory.cli.sim_esp import add_esp_arguments
    add_esp_arguments(p)


def cmd_provision(args: argparse.Namespace) -> int:
    from factory.config import DRIVERS, Fixture
    from factory.units.errors import UnitError
    from factory.units.esp import EsptoolDriver
    from factory.units.fixture import make_driver
    from factory.units.pipeline import Pipeline, UnitRun
    from factory.units.port import open_port

    if args.driver not in DRIVERS:
        raise CliError(f"--driver must be one of {', '.join(DRIVERS)}")
    if not 9600 <= args.flash_baud <= 4_000_000:
        raise CliError(f"--flash-baud must be between 9600 and 4000000, got {args.flash_baud}")

    async def work(journal: Journal, config: StationConfig) -> int:
        product = config.product(args.product)
        if product is None:
            raise CliError(f"{args.product!r} is not a product of {config.source}")
        console = ConsoleSettings()
        if args.identify_command:
            console = dataclasses.replace(console, identify_command=args.identify_command)
        esptool = EsptoolSettings(before=args.before, after=args.after,
                                  flash_baud=args.flash_baud)
        fixture = Fixture(name="cli", port=args.port, driver=args.driver, product=product.id,
                          baud=args.baud, device_path=args.path, console=console,
                          esptool=esptool)
        run = UnitRun(fixture=f"cli-{getpass.getuser()}", product=product,
                      device_path=args.path)
        printed = 0

        def show(_: UnitRun) -> None:
            nonlocal printed
            for line in run.log[printed:]:
                print(f"  {line}")
            printed = len(run.log)
            if run.step != "done":
                print(f"{run.step} ...", flush=True)

        # esptool opens the device itself (units/esp.py)
        port = None if args.driver == "esptool" else await open_port(args.port, args.baud)
        driver = make_driver(fixture, port)
        try:
            await Pipeline(journal, on_step=show).provision(run, driver)
            if isinstance(driver, EsptoolDriver):  # a pre-claimed product's unit waits for
                await driver.release()  # its certificate files, which only a station writes
        except UnitError:
            show(run)
            return 1
        finally:
            if port is not None:
                await port.close()
        show(run)
        assert run.uci is not None
        print(f"done: unit {uci_codec.human(run.uci)} ({run.uci}), {run.device_path} "
              "verified")
        return 0

    try:
        return with_journal(args, work, create=True)
    except UnitError as exc:
        print(f"factory: {exc.reason} -> {exc.action}", file=sys.stderr)
        return 1


def cmd_sim_unit(args: argparse.Namespace) -> int:
    from factory.testbed.sim.run import run_sim_unit

    return asyncio.run(run_sim_unit(args))
