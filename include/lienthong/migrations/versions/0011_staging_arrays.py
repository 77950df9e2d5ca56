"""Staging keeps a record's lists as text[], as core does (faster COPY and apply).

Revision ID: 0011
Revises: 0002
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0011"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("011_staging_arrays.sql"))


def downgrade() -> None:
    for column in ("isbns", "keywords", "subjects", "repairs"):
        op.execute(f"ALTER TABLE staging.record ALTER COLUMN {column} TYPE jsonb USING to_jsonb({column})")
