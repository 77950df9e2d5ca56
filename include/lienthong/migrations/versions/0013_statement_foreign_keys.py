"""The foreign keys every loaded row fired (copy → record version, version → batch) checked per statement.

Revision ID: 0013
Revises: 0012
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TRIGGERS = {
    "core.item": ("item_record_id_fkey_insert", "item_record_id_fkey_update"),
    "core.record": ("item_record_id_fkey_cascade", "item_record_id_fkey_truncate", "item_record_id_fkey_key",
                    "record_loaded_by_batch_fkey_insert", "record_loaded_by_batch_fkey_update"),
    "core.batch": ("record_loaded_by_batch_fkey_delete", "record_loaded_by_batch_fkey_key"),
}
_FUNCTIONS = ("item_record_check", "record_items_delete", "record_items_truncate", "record_id_keep",
              "record_batch_check", "record_batch_recheck", "batch_records_restrict", "batch_key_keep")


def upgrade() -> None:
    op.execute(sql_file("013_statement_foreign_keys.sql"))


def downgrade() -> None:
    for table, triggers in _TRIGGERS.items():
        for trigger in triggers:
            op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for function in _FUNCTIONS:
        op.execute(f"DROP FUNCTION core.{function}()")
    op.execute("DROP FUNCTION core.fk_violation(text, text, text, text), core.fk_require_read_committed(text)")
    op.execute("""ALTER TABLE core.item ADD CONSTRAINT item_record_id_fkey FOREIGN KEY (record_id)
                      REFERENCES core.record (record_id) ON DELETE CASCADE""")
    op.execute("""ALTER TABLE core.record ADD CONSTRAINT record_loaded_by_batch_fkey
                      FOREIGN KEY (loaded_by_batch, library_code) REFERENCES core.batch (batch_id, library_code)""")
