"""Quality: accepted exceptions, batch-level checks, GX results for Data Docs, scorecards and their marts.

Revision ID: 0003
Revises: 0002
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("003_quality.sql"))


def downgrade() -> None:
    op.execute(
        """DROP VIEW IF EXISTS marts.quality_rollup, marts.scorecard_trend, marts.library_scorecard,
                             marts.record_quality;
           DROP TABLE IF EXISTS quality.scorecard_rollup, quality.scorecard_element, quality.scorecard,
                                quality.gx_result, quality.batch_check, quality.exception;
           DROP SEQUENCE IF EXISTS quality.scorecard_refresh_seq;
           DROP INDEX IF EXISTS quality.check_failure_record_idx;
           ALTER TABLE quality.check_failure DROP COLUMN IF EXISTS record_hash,
               DROP COLUMN IF EXISTS default_severity, DROP COLUMN IF EXISTS accepted,
               DROP COLUMN IF EXISTS exception_id;"""
    )
