"""Marts: documented views for analysts.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("002_marts.sql"))


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS marts CASCADE; CREATE SCHEMA marts")
