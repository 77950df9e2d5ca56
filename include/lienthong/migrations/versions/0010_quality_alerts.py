"""Quality alerts sent to lead libraries (tier drops, held batches).

Revision ID: 0010
Revises: 0002
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0010"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("010_quality_alerts.sql"))


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS quality.alert")
