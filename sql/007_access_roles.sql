-- lienthong warehouse: the four group roles of migration 007 (cluster-wide, idempotent).
-- Run by the migration and again by `lienthong db restore` on a server that lacks them.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['lienthong_pipeline', 'lienthong_analyst', 'lienthong_steward',
                                     'lienthong_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration created it at the same moment
            END;
        END IF;
    END LOOP;
END
$$;
