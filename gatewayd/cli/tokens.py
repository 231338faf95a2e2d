"""``gatewayd token create|list|revoke``: API tokens for the users of the config.

``create`` makes a token for a user and keeps its hash in the mailbox: the running
daemon takes it on the next request (no reload), and ``revoke`` ends it within a
second or two (docs/api.md). The token itself is printed once, alone on stdout (so
``TOKEN=$(gatewayd token create --user ...)`` works); what it is, on stderr. With
``--config-hash`` nothing is stored: the token is printed with the ``api_token_hash``
line for the user's ``[[users]]`` entry, which takes effect on reload, as before.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta

from gatewayd import credentials
from gatewayd.cli import config_option, json_option
from gatewayd.cli.messages import open_mailbox
from gatewayd.cli.output import CommandError, parse_id, print_json, table
from gatewayd.config.reader import parse_duration
from gatewayd.config.settings import Settings, User
from gatewayd.errors import MessageNotFound
from gatewayd.mailbox import ApiToken, iso


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(
        dest="token_command", required=True, metavar="create|list|revoke"
    )
    create = actions.add_parser(
        "create",
        help="a new API token for a user, in effect at once; printed once",
        description="A new API token for a user of the config, kept (hashed) in the "
        "mailbox and in effect at once. The token alone goes to stdout.",
    )
    config_option(create)
    json_option(create)
    create.add_argument(
        "--user", required=True, metavar="EMAIL", help="one of the user's addresses"
    )
    create.add_argument("--name", default="", help="what the token is for (shown by token list)")
    create.add_argument(
        "--expires",
        metavar="DURATION",
        help="valid this long: 12h, 30d, 90d (default: until revoked)",
    )
    create.add_argument(
        "--config-hash",
        action="store_true",
        help="store nothing: print the token with the api_token_hash line for the config",
    )
    create.set_defaults(handler=create_command)
    listing = actions.add_parser("list", help="the tokens kept in the mailbox")
    config_option(listing)
    json_option(listing)
    listing.add_argument("--user", metavar="EMAIL", help="only this user's")
    listing.set_defaults(handler=list_command)
    revoke = actions.add_parser("revoke", help="end tokens at once (within a second or two)")
    config_option(revoke)
    json_option(revoke)
    revoke.add_argument("ids", nargs="+", metavar="ID")
    revoke.set_defaults(handler=revoke_command)


def _user(settings: Settings, address: str) -> User:
    user = settings.user_by_email(address)
    if user is None:
        raise CommandError(f"no user has the address {address!r} in the config")
    return user


def create_command(settings: Settings, args: argparse.Namespace) -> int:
    user = _user(settings, args.user)
    token = credentials.new_token()
    if args.config_hash:
        print(f"token: {token}")
        print(f"# in the [[users]] entry of {user.emails[0]} (extension {user.extension_number}):")
        print(f'api_token_hash = "{credentials.hash_token(token)}"')
        print("# then reload or restart gatewayd; the token is not stored anywhere else")
        return 0
    expires_at = None
    if args.expires:
        seconds = parse_duration(args.expires)
        if seconds is None or seconds <= 0:
            raise CommandError(f"--expires {args.expires!r}: not a duration (12h, 30d, 90d)")
        expires_at = datetime.now(UTC) + timedelta(seconds=seconds)
    if len(args.name) > 128:
        raise CommandError("--name: at most 128 characters")

    async def store() -> ApiToken:
        async with open_mailbox(settings) as mailbox:
            return await mailbox.create_token(
                account_id=user.account_id,
                extension_id=user.extension_id,
                email=args.user.strip().lower(),
                name=args.name,
                token_hash=credentials.hash_token(token),
                expires_at=expires_at,
            )

    made = asyncio.run(store())
    if args.json:
        print_json({"token": token, **made.to_json(datetime.now(UTC))})
        return 0
    print(token)
    until = f"until {iso(made.expires_at)}" if made.expires_at else "until revoked"
    print(
        f"gatewayd: API token {made.id} for {made.email} (extension {user.extension_number})"
        f"{f', {made.name!r}' if made.name else ''}: in effect now, {until}; "
        "it is shown only this once",
        file=sys.stderr,
    )
    return 0


def list_command(settings: Settings, args: argparse.Namespace) -> int:
    extension = _user(settings, args.user).extension_id if args.user else None

    async def read() -> list[ApiToken]:
        async with open_mailbox(settings) as mailbox:
            return await mailbox.tokens(extension_id=extension)

    tokens = asyncio.run(read())
    now = datetime.now(UTC)
    if args.json:
        print_json([t.to_json(now) for t in tokens])
        return 0
    table(
        ["ID", "USER", "EXT", "NAME", "STATE", "CREATED", "EXPIRES", "REVOKED"],
        [
            [
                t.id,
                t.email,
                _extension_number(settings, t.extension_id),
                t.name or None,
                t.state(now),
                iso(t.created_at),
                iso(t.expires_at),
                iso(t.revoked_at),
            ]
            for t in tokens
        ],
    )
    return 0


def _extension_number(settings: Settings, extension_id: int) -> str:
    user = settings.user_by_extension(extension_id)
    return user.extension_number if user else f"id {extension_id} (no such user now)"


def revoke_command(settings: Settings, args: argparse.Namespace) -> int:
    ids = [parse_id(text, "token id") for text in args.ids]

    async def revoke() -> list[ApiToken | int]:
        done: list[ApiToken | int] = []
        async with open_mailbox(settings) as mailbox:
            for token_id in ids:
                try:
                    done.append(await mailbox.revoke_token(token_id))
                except MessageNotFound:
                    done.append(token_id)
        return done

    results = asyncio.run(revoke())
    now = datetime.now(UTC)
    if args.json:
        print_json(
            [
                r.to_json(now) if isinstance(r, ApiToken) else {"id": r, "error": "no such token"}
                for r in results
            ]
        )
    else:
        for result in results:
            if isinstance(result, ApiToken):
                print(f"{result.id}: revoked at {iso(result.revoked_at)} ({result.email})")
            else:
                print(f"gatewayd: {result}: no such token", file=sys.stderr)
    return 0 if all(isinstance(r, ApiToken) for r in results) else 1
