"""A record references its loading and closing batch together with its library (one cheaper check per version).

Revision ID: 0012
Revises: 0002
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0012"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("012_record_batch_library.sql"))


def downgrade() -> None:
    op.execute(
        """ALTER TABLE core.record
               DROP CONSTRAINT record_loaded_by_batch_fkey,
               DROP CONSTRAINT record_closed_by_batch_fkey,
               ADD CONSTRAINT record_library_code_fkey FOREIGN KEY (library_code)
                   REFERENCES core.library (library_code),
               ADD CONSTRAINT record_loaded_by_batch_fkey FOREIGN KEY (loaded_by_batch)
                   REFERENCES core.batch (batch_id),
               ADD CONSTRAINT record_closed_by_batch_fkey FOREIGN KEY (closed_by_batch)
                   REFERENCES core.batch (batch_id)"""
    )
    op.execute("ALTER TABLE core.batch DROP CONSTRAINT batch_library_key, DROP CONSTRAINT batch_library_code_fkey")
