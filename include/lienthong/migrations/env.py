"""Alembic environment: runs on the connection lienthong hands over (no alembic.ini, no URL here)."""
from alembic import context

from lienthong.migrations import VERSION_TABLE_SCHEMA

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table_schema=VERSION_TABLE_SCHEMA, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
