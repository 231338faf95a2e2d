"""API tokens kept in the mailbox: made by ``gatewayd token create``, looked up by the
API on each request (through its short cache), revoked by ``gatewayd token revoke``.

Only the token's hash is stored (``sha256$<hex>``, as ``credentials.hash_token``
makes it), unique, so a lookup is one index probe. A revoked token keeps its row (so
``token list`` shows who had what), with the time it was revoked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from gatewayd.clock import Clock
from gatewayd.errors import MessageNotFound
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._rows import Row
from gatewayd.mailbox._schema import api_tokens
from gatewayd.mailbox.records import ApiToken


def _token(row: Row) -> ApiToken:
    return ApiToken(
        id=row["id"],
        account_id=row["account_id"],
        extension_id=row["extension_id"],
        email=row["email"],
        name=row["name"],
        token_hash=row["token_hash"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


Owner = tuple[int, int, str]
"""Whose a token is: (account id, extension id, email address)."""


async def create(
    db: Database, clock: Clock, owner: Owner, token: tuple[str, str, datetime | None]
) -> ApiToken:
    """A new token row: ``token`` is (its hash, its name, when it expires)."""
    account_id, extension_id, email = owner
    token_hash, name, expires_at = token
    values: dict[str, Any] = {
        "token_hash": token_hash,
        "account_id": account_id,
        "extension_id": extension_id,
        "email": email,
        "name": name,
        "created_at": clock.now(),
        "expires_at": expires_at,
        "revoked_at": None,
    }
    async with db.write() as conn:
        found = await conn.execute(api_tokens.insert().values(values).returning(api_tokens))
        return _token(found.mappings().one())


async def listed(db: Database, extension_id: int | None) -> list[ApiToken]:
    query = sa.select(api_tokens).order_by(api_tokens.c.id)
    if extension_id is not None:
        query = query.where(api_tokens.c.extension_id == extension_id)
    async with db.read() as conn:
        return [_token(row) for row in (await conn.execute(query)).mappings()]


async def by_hash(db: Database, token_hash: str) -> ApiToken | None:
    query = sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash)
    async with db.read() as conn:
        row = (await conn.execute(query)).mappings().first()
    return _token(row) if row is not None else None


async def revoke(db: Database, clock: Clock, token_id: int) -> ApiToken:
    c = api_tokens.c
    async with db.write() as conn:
        await conn.execute(
            sa.update(api_tokens)
            .where(c.id == token_id, c.revoked_at.is_(None))
            .values(revoked_at=clock.now())
        )
        row = (await conn.execute(sa.select(api_tokens).where(c.id == token_id))).mappings().first()
    if row is None:
        raise MessageNotFound(token_id, what="API token")
    return _token(row)
