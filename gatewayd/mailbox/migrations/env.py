"""Alembic environment: gatewayd hands over an open connection (inside its own
transaction) through ``config.attributes["connection"]``; see mailbox/_database.py.

To write a new revision, edit mailbox/_schema.py and follow docs/development.md
("A schema change"); tests/integration/test_migrations.py fails until the migrations
and _schema.py agree again.
"""

from __future__ import annotations

from alembic import context

from gatewayd.mailbox._schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("gatewayd migrations run only through gatewayd (they need a connection)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
