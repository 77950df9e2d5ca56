"""Access: warehouse roles (pipeline, analyst, steward, lead-library admin) and row-level security.

Revision ID: 0007
Revises: 0002
"""
from alembic import op

from lienthong.migrations import sql_file

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sql_file("007_access_roles.sql"))
    op.execute(sql_file("007_access.sql"))


def downgrade() -> None:
    # The roles are cluster-wide and may serve other databases: they stay; this database's rights go.
    op.execute(
        """
        DO $$
        DECLARE rel regclass;
        BEGIN
            FOR rel IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = 'quality' AND c.relkind IN ('r', 'p') LOOP
                EXECUTE format('DROP POLICY IF EXISTS steward_own_groups ON %s', rel);
                EXECUTE format('DROP POLICY IF EXISTS pipeline_all ON %s', rel);
                EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', rel);
            END LOOP;
        END $$;
        ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM lienthong_pipeline;
        ALTER DEFAULT PRIVILEGES REVOKE ALL ON SEQUENCES FROM lienthong_pipeline;
        ALTER DEFAULT PRIVILEGES REVOKE ALL ON SCHEMAS FROM lienthong_pipeline;
        ALTER DEFAULT PRIVILEGES IN SCHEMA marts REVOKE ALL ON TABLES FROM lienthong_analyst;
        DROP SCHEMA IF EXISTS access CASCADE;
        DROP OWNED BY lienthong_pipeline, lienthong_analyst, lienthong_steward, lienthong_admin;
        """
    )
