"""Circulation: loans, inter-library loan, reader cards, collection rotation; their marts and policy flags.

Revision ID: 0005
Revises: 0002
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("005_circulation.sql"))


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS marts.circulation_summary(date, date);"
        "DROP VIEW IF EXISTS marts.circulation_batches, marts.circulation_policy_flags, marts.rotation,"
        " marts.card_use, marts.reader_cards, marts.ill_by_channel, marts.ill_requests, marts.circulation_loans;"
        "DROP SCHEMA IF EXISTS circulation CASCADE"
    )
