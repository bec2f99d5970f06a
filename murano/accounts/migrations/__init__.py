"""Alembic revisions of the accounts schema, shipped in the package and applied by the
server itself at start (`murano.accounts.migrate`)."""
