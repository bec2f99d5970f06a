"""Alembic's environment for the accounts schema.

It runs only through `murano.accounts.migrate`, on a connection that the caller opened
(and holds a migration lock on) in `config.attributes["connection"]`; there is no
alembic.ini and no offline mode, so the server, the CLI and the tests all migrate the
same way.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from murano.accounts._tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run murano's migrations through murano.accounts.migrate.upgrade()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
