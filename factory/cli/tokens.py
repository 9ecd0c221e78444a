"""`factory token new|list|revoke`: the API tokens kept in the journal."""

from __future__ import annotations

import argparse
import sys

from factory.cli.common import CliError, Subcommands, command, group, with_journal
from factory.config import StationConfig
from factory.journal.interface import Journal
from factory.journal.records import ROLES
from factory.tokens import new_token, token_hash, valid_name


def register(sub: Subcommands) -> None:
    actions = group(sub, "token", "Manage API tokens.")
    p = command(actions, "new", cmd_token_new,
                "Make a token; it is printed once, only its hash is kept.")
    p.add_argument("--role", required=True, choices=ROLES,
                   help="device: issue only; operator: issue, void, read; viewer: read")
    p.add_argument("--name", required=True, help="who holds it (e.g. fixture-3, alice)")
    command(actions, "list", cmd_token_list, "List tokens (names and roles, never the tokens).")
    p = command(actions, "revoke", cmd_token_revoke, "Revoke a token by name.")
    p.add_argument("name")


def cmd_token_new(args: argparse.Namespace) -> int:
    if not valid_name(args.name):
        raise CliError("a token name is 1-64 letters, digits and . _ @ -")

    async def work(journal: Journal, config: StationConfig) -> int:
        token = new_token()
        await journal.add_token(args.name, args.role, token_hash(token))
        print(token)
        print(f"(token {args.name!r}, role {args.role}: shown only this once, keep it safe)",
              file=sys.stderr)
        return 0

    return with_journal(args, work, create=True)


def cmd_token_list(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        for t in await journal.tokens():
            status = f"revoked {t.revoked_at}" if t.revoked_at else "active"
            print(f"{t.name:<24} {t.role:<9} created {t.created_at}  {status}")
        return 0

    return with_journal(args, work)


def cmd_token_revoke(args: argparse.Namespace) -> int:
    async def work(journal: Journal, config: StationConfig) -> int:
        await journal.revoke_token(args.name)
        print(f"revoked {args.name!r}; a running station refuses it within seconds")
        return 0

    return with_journal(args, work)
