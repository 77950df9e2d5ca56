"""Period reports: reporting schema (reminders, report runs), figures as of an instant, submissions.

Revision ID: 0006
Revises: 0002
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("006_reporting.sql"))


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS marts.period_report_runs, marts.period_reminders")
    op.execute("DROP FUNCTION IF EXISTS marts.library_figures_as_of(timestamptz, timestamptz)")
    op.execute("DROP FUNCTION IF EXISTS marts.period_submissions(timestamptz, timestamptz, timestamptz)")
    op.execute("DROP SCHEMA IF EXISTS reporting CASCADE")
