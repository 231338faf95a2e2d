"""``gatewayd token create``: a new API token for a user of the config."""

from __future__ import annotations

import argparse

from gatewayd import credentials
from gatewayd.cli import config_option
from gatewayd.cli.output import CommandError
from gatewayd.config.settings import Settings


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="token_command", required=True, metavar="create")
    create = actions.add_parser(
        "create", help="a new API token for a user: printed once, with the hash for the config"
    )
    config_option(create)
    create.add_argument(
        "--user", required=True, metavar="EMAIL", help="one of the user's addresses"
    )
    create.set_defaults(handler=create_command)


def create_command(settings: Settings, args: argparse.Namespace) -> int:
    user = settings.user_by_email(args.user)
    if user is None:
        raise CommandError(f"no user has the address {args.user!r} in the config")
    token = credentials.new_token()
    print(f"token: {token}")
    print(f"# in the [[users]] entry of {user.emails[0]} (extension {user.extension_number}):")
    print(f'api_token_hash = "{credentials.hash_token(token)}"')
    print("# then reload or restart gatewayd; the token is not stored anywhere else")
    return 0
