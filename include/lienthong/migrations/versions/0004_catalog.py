"""The union catalogue: match keys, links with evidence, stewards' decisions, clusters, access rules, marts.

Revision ID: 0004
Revises: 0002
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("004_catalog.sql"))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS marts.clusters_per_group, marts.holdings, marts.union_catalog")
    op.execute("DROP SCHEMA IF EXISTS catalog CASCADE; CREATE SCHEMA catalog")
