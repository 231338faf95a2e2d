"""``gatewayd hash-secret``: a password or API token hashed for the config. The secret
comes from the terminal (asked twice) or stdin, never from the command line."""

from __future__ import annotations

import argparse
import getpass
import sys

from gatewayd import credentials
from gatewayd.cli.output import CommandError


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token", action="store_true", help="hash an API token (fast sha256) instead of a password"
    )
    parser.add_argument(
        "--new-token",
        action="store_true",
        help="make a new random API token, print it once with its hash",
    )
    parser.set_defaults(handler=command, config_mode="none", as_caller=True)


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if getpass.getpass("again: ") != first:
            raise CommandError("the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def command(args: argparse.Namespace) -> int:
    if args.new_token:
        token = credentials.new_token()
        print(f"token: {token}")
        print(f'api_token_hash = "{credentials.hash_token(token)}"')
        return 0
    secret = _read_secret("token: " if args.token else "password: ")
    if not secret:
        raise CommandError("empty secret: nothing to hash")
    print(credentials.hash_token(secret) if args.token else credentials.hash_password(secret))
    return 0
