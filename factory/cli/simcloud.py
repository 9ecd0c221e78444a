"""`factory sim-cloud KIND`: simulated device clouds that cannot run here (a Java server, a
hosted API), for demos and tests; each is refereed by that cloud's official client."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from factory.cli.common import CliError, Subcommands, command, group
from factory.config import parse_listen
from factory.files import write_in_place


def register(sub: Subcommands) -> None:
    kinds = group(sub, "sim-cloud", "Simulated device clouds: the endpoints the station's "
                                    "upstreams and their customers use.")
    p = command(kinds, "thingsboard", cmd_thingsboard,
                "A simulated ThingsBoard (docs/upstream-thingsboard.md) until SIGTERM; it "
                "knows tenant@thingsboard.org/tenant and customer@thingsboard.org/customer.")
    p.add_argument("--db", required=True, type=Path, help="SQLite file (made 0600 if new)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default %(default)s;"
                                                              " port 0 picks a free one)")
    p.add_argument("--token-ttl", type=int, default=9000,
                   help="seconds an access token lasts (default %(default)s, as ThingsBoard)")
    p.add_argument("--no-claiming-by-default", action="store_true",
                   help="as security.claim.allowClaimingByDefault = false: a released device "
                        "gets the claimingAllowed attribute")
    p.add_argument("--api-key-file", type=Path,
                   help="make an API key for the tenant, write it to this file (0600) and exit")
    _register_particle(kinds)
    _register_rainmaker(kinds)


def cmd_thingsboard(args: argparse.Namespace) -> int:
    from factory.testbed.clouds.thingsboard.app import serve  # aiohttp only when serving
    from factory.testbed.clouds.thingsboard.auth import TokenSettings
    from factory.testbed.clouds.thingsboard.keys import Settings
    from factory.testbed.clouds.thingsboard.store import Store

    host, port = parse_listen("--listen", args.listen)
    if args.token_ttl < 1:
        raise CliError("--token-ttl must be at least 1 second")
    if args.api_key_file is not None:
        async def make_key() -> str:
            store = await Store.open(args.db)
            try:
                return await store.add_api_key("tenant@thingsboard.org")
            finally:
                await store.close()

        write_in_place(args.api_key_file, (asyncio.run(make_key()) + "\n").encode())
        print(f"an API key for tenant@thingsboard.org is in {args.api_key_file}",
              file=sys.stderr)
        return 0
    asyncio.run(serve(Settings(db=args.db, host=host, port=port,
                               tokens=TokenSettings(access_ttl=args.token_ttl),
                               allow_claiming_by_default=not args.no_claiming_by_default)))
    return 0


# --- particle ------------------------------------------------------------------------------


def _register_particle(kinds: Subcommands) -> None:
    p = command(kinds, "particle", cmd_particle,
                "A simulated Particle Cloud API (docs/upstream-particle.md) until SIGTERM: "
                "importing device IDs into products, claim codes.")
    p.add_argument("--db", required=True, type=Path, help="SQLite file (made 0600 if new)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default %(default)s;"
                                                              " port 0 picks a free one)")
    p.add_argument("--product", action="append", default=[], metavar="ID:SLUG",
                   help="a product it knows, e.g. 12345:air-sensor (repeatable)")
    p.add_argument("--token-file", type=Path,
                   help="make an access token for a team member of the --product(s), write "
                        "it to this file (0600) and exit")
    p.add_argument("--customer-token-file", type=Path,
                   help="make an access token for a customer of the (first) --product, write "
                        "it to this file (0600) and exit")


def _particle_products(values: list[str]) -> tuple[tuple[int, str], ...]:
    products = []
    for value in values:
        number, _, slug = value.partition(":")
        if not number.isascii() or not number.isdigit() or not slug:
            raise CliError(f"--product must be ID:SLUG such as 12345:air-sensor, got {value!r}")
        products.append((int(number), slug))
    return tuple(products)


def cmd_particle(args: argparse.Namespace) -> int:
    from factory.testbed.clouds.particle.app import Settings, serve  # aiohttp only when used
    from factory.testbed.clouds.particle.store import Role, Store

    host, port = parse_listen("--listen", args.listen)
    products = _particle_products(args.product)
    if args.token_file is not None or args.customer_token_file is not None:
        if not products:
            raise CliError("--token-file and --customer-token-file need a --product")
        member = args.token_file is not None
        role: Role = "member" if member else "customer"
        target = args.token_file if member else args.customer_token_file

        async def make_token() -> str:
            store = await Store.open(args.db)
            try:
                for product_id, slug in products:
                    await store.add_product(product_id, slug)
                ids = tuple(p for p, _ in products)
                return await store.add_token(f"{role}@example.com", role, ids)
            finally:
                await store.close()

        write_in_place(target, (asyncio.run(make_token()) + "\n").encode())
        print(f"an access token for a {role} is in {target}", file=sys.stderr)
        return 0
    asyncio.run(serve(Settings(db=args.db, host=host, port=port), products))
    return 0


# --- rainmaker -----------------------------------------------------------------------------


def _register_rainmaker(kinds: Subcommands) -> None:
    p = command(kinds, "rainmaker", cmd_rainmaker,
                "A simulated ESP RainMaker claiming service (host-driven claiming: "
                "claim/initiate and claim/verify, and the CLI's login) until SIGTERM.")
    p.add_argument("--db", required=True, type=Path, help="SQLite file (made 0600 if new)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default %(default)s;"
                                                              " port 0 picks a free one)")
    p.add_argument("--user", action="append", default=[], metavar="EMAIL:PASSWORD",
                   help="an account it knows (made or updated; repeatable)")
    p.add_argument("--quota", type=int, default=5,
                   help="nodes each --user may claim (default %(default)s, as the service)")
    p.add_argument("--mqtt-host", default="a1sim2rainmaker3-ats.iot.us-east-1.amazonaws.com",
                   help="the MQTT host it hands out (default %(default)s)")
    p.add_argument("--token-file", type=Path,
                   help="make an access token for the (first) --user, write it to this file "
                        "(0600) and exit")
    p.add_argument("--token-ttl", type=int, default=3600,
                   help="seconds an access token lasts (default %(default)s, as Cognito's)")


def cmd_rainmaker(args: argparse.Namespace) -> int:
    from factory.testbed.clouds.rainmaker.app import Settings, serve  # aiohttp only when used
    from factory.testbed.clouds.rainmaker.store import Store

    host, port = parse_listen("--listen", args.listen)
    users = []
    for value in args.user:
        email, sep, password = value.partition(":")
        if not sep or not email or not password:
            raise CliError(f"--user must be EMAIL:PASSWORD, got {value!r}")
        users.append((email, password))
    if args.quota < 0 or args.token_ttl < 1:
        raise CliError("--quota must be at least 0 and --token-ttl at least 1 second")
    if args.token_file is not None and not users:
        raise CliError("--token-file needs a --user")

    async def set_up() -> str | None:
        store = await Store.open(args.db)
        try:
            made = [await store.add_user(email, password, args.quota)
                    for email, password in users]
            if args.token_file is None:
                return None
            return (await store.new_tokens(made[0].id, args.token_ttl)).accesstoken
        finally:
            await store.close()

    token = asyncio.run(set_up())
    if token is not None:
        write_in_place(args.token_file, (token + "\n").encode())
        print(f"an access token for {users[0][0]} is in {args.token_file}", file=sys.stderr)
        return 0
    asyncio.run(serve(Settings(db=args.db, host=host, port=port, mqtt_host=args.mqtt_host,
                               token_ttl=float(args.token_ttl))))
    return 0
