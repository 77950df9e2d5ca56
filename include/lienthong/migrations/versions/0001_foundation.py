"""Foundation: stage schemas, registry dimensions, landing manifest, batches, core history, quality.

Revision ID: 0001
Revises:
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("001_foundation.sql"))


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS marts, catalog, quality, core, staging, landing CASCADE")
