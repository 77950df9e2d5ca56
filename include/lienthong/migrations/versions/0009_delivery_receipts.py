"""Delivery receipts: an unchanged re-delivery is recorded as a batch with status 'unchanged'.

Revision ID: 0009
Revises: 0002
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0009"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("009_delivery_receipts.sql"))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS marts.library_deliveries")
    op.execute("DELETE FROM core.batch WHERE status = 'unchanged'")
    op.execute("ALTER TABLE core.batch DROP COLUMN IF EXISTS same_as_batch")
