-- lienthong warehouse, migration 007: who may see what (schema access).
--
-- Four group roles, NOLOGIN, cluster-wide (created once, shared by every database of the server):
--   lienthong_pipeline  reads and writes the stage schemas (the DAGs' login is a member)
--   lienthong_analyst   reads the documented views in marts, nothing else (never a patron-level table)
--   lienthong_steward   reads the quality tables, row-level secured to the libraries of its groups
--   lienthong_admin     a lead library's administrator: grants and revokes the stewards of its groups
-- Logins are members of these roles, made by access.grant_login (`lienthong access grant`).
-- Object privileges are per database and are (re)applied by access.secure(), which also covers tables
-- that later feature migrations add; a table it has not seen yet is closed to stewards (fail-closed).

-- ---------------------------------------------------------------- roles: sql/007_access_roles.sql (run first)

-- ---------------------------------------------------------------- who is steward / admin of which group
CREATE SCHEMA IF NOT EXISTS access;

CREATE TABLE access.login (
    role_name   text PRIMARY KEY,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE access.login IS
  'Login roles lienthong created (grant); a lead-library administrator may only manage these.';

CREATE TABLE access.steward_group (
    role_name   text NOT NULL,
    group_code  text NOT NULL,
    granted_by  text NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, group_code)
);
COMMENT ON TABLE access.steward_group IS
  'Steward logins and the library groups whose quality results they may read (row-level security).';

CREATE TABLE access.group_admin (
    role_name   text NOT NULL,
    group_code  text NOT NULL,
    granted_by  text NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, group_code)
);
COMMENT ON TABLE access.group_admin IS
  'Administrators of a group''s lead library: they grant and revoke that group''s stewards.';

-- The libraries the current role stewards today (invoker's rights: current_user is the reader).
CREATE FUNCTION access.my_library_codes() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT gm.library_code
    FROM access.steward_group sg
    JOIN core.group_membership gm ON gm.group_code = sg.group_code
    WHERE sg.role_name = current_user
      AND gm.valid_from <= current_date AND (gm.valid_to IS NULL OR gm.valid_to >= current_date)
$$;

ALTER TABLE access.steward_group ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON access.steward_group FOR SELECT TO lienthong_steward USING (role_name = current_user);
CREATE POLICY own_groups ON access.steward_group FOR SELECT TO lienthong_admin
    USING (group_code IN (SELECT a.group_code FROM access.group_admin a WHERE a.role_name = current_user));
ALTER TABLE access.group_admin ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON access.group_admin FOR SELECT TO lienthong_admin USING (role_name = current_user);

-- ---------------------------------------------------------------- privileges, re-applied on demand
CREATE FUNCTION access.secure() RETURNS TABLE (table_name text, steward_readable boolean)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    schema_name text;
    rel record;
BEGIN
    -- The pipeline writes every stage schema; the analyst sees none but marts.
    FOR schema_name IN
        SELECT n.nspname FROM pg_namespace n
        WHERE n.nspname NOT IN ('access', 'public', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
          AND n.nspowner = (SELECT nspowner FROM pg_namespace WHERE nspname = 'access')
    LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO lienthong_pipeline', schema_name);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO lienthong_pipeline',
                       schema_name);
        EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO lienthong_pipeline',
                       schema_name);
        IF schema_name = 'marts' THEN
            EXECUTE 'REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA marts FROM lienthong_pipeline';
            EXECUTE 'GRANT USAGE ON SCHEMA marts TO lienthong_analyst';
            EXECUTE 'GRANT SELECT ON ALL TABLES IN SCHEMA marts TO lienthong_analyst';
        ELSE
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM lienthong_analyst, lienthong_steward, '
                           'lienthong_admin', schema_name);
            EXECUTE format('REVOKE ALL ON SCHEMA %I FROM lienthong_analyst', schema_name);
        END IF;
    END LOOP;
    -- Views in marts read base tables with their owner's rights, which would pass row-level security:
    -- stewards read the quality tables themselves, never marts.
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA marts FROM lienthong_steward';
    IF to_regclass('public.alembic_version') IS NOT NULL THEN
        EXECUTE 'GRANT SELECT ON public.alembic_version TO lienthong_pipeline';
    END IF;

    -- Nobody but the owner writes access; stewards and admins read their own rows.
    REVOKE ALL ON ALL TABLES IN SCHEMA access FROM lienthong_pipeline, lienthong_analyst, lienthong_steward,
                                                   lienthong_admin;
    REVOKE ALL ON SCHEMA access FROM lienthong_pipeline, lienthong_analyst;
    GRANT USAGE ON SCHEMA access TO lienthong_steward, lienthong_admin;
    GRANT SELECT ON access.steward_group TO lienthong_steward, lienthong_admin;
    GRANT SELECT ON access.group_admin, access.login TO lienthong_admin;
    GRANT USAGE ON SCHEMA core, quality TO lienthong_steward;
    GRANT SELECT ON core.group_membership, core.library_group, core.library TO lienthong_steward, lienthong_admin;
    GRANT USAGE ON SCHEMA core TO lienthong_admin;

    -- Quality tables: row-level security on library_code; a table without it stays closed to stewards.
    FOR rel IN
        SELECT c.oid::regclass AS name,
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'library_code'
                       AND NOT a.attisdropped AND a.attnum > 0) AS per_library
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'quality' AND c.relkind IN ('r', 'p')
        ORDER BY 1::text
    LOOP
        IF rel.per_library THEN
            EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', rel.name);
            EXECUTE format('DROP POLICY IF EXISTS steward_own_groups ON %s', rel.name);
            EXECUTE format('CREATE POLICY steward_own_groups ON %s FOR SELECT TO lienthong_steward '
                           'USING (library_code IN (SELECT access.my_library_codes()))', rel.name);
            EXECUTE format('DROP POLICY IF EXISTS pipeline_all ON %s', rel.name);
            EXECUTE format('CREATE POLICY pipeline_all ON %s FOR ALL TO lienthong_pipeline '
                           'USING (true) WITH CHECK (true)', rel.name);
            EXECUTE format('GRANT SELECT ON %s TO lienthong_steward', rel.name);
        ELSE
            EXECUTE format('REVOKE ALL ON %s FROM lienthong_steward', rel.name);
        END IF;
        table_name := rel.name::text;
        steward_readable := rel.per_library;
        RETURN NEXT;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION access.secure() FROM PUBLIC;

-- ---------------------------------------------------------------- grant and revoke (owner's rights)
CREATE FUNCTION access.may_manage(p_kind text, p_group text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)
        OR pg_has_role(session_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'access'), 'MEMBER')
        OR (p_kind = 'steward' AND EXISTS (SELECT 1 FROM access.group_admin a
                                           WHERE a.role_name = session_user AND a.group_code = p_group))
$$;

CREATE FUNCTION access.grant_login(p_kind text, p_login text, p_group text DEFAULT NULL,
                                   p_password_hash text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    group_role text := 'lienthong_' || p_kind;
    created boolean := false;
    existing record;
    changed integer := 0;
    inserted integer := 0;
BEGIN
    IF p_kind NOT IN ('steward', 'admin', 'analyst', 'pipeline') THEN
        RAISE EXCEPTION 'unknown role kind %: steward, admin, analyst or pipeline', p_kind USING ERRCODE = '22023';
    END IF;
    IF p_login IS NULL OR p_login !~ '^[a-z][a-z0-9_]{2,62}$' OR p_login LIKE 'pg\_%'
       OR p_login LIKE 'lienthong\_%' OR p_login = 'postgres' THEN
        RAISE EXCEPTION 'login name % is not allowed: 3-63 lower-case letters, digits or _, starting with a '
                        'letter, not pg_*, lienthong_* or postgres', quote_literal(coalesce(p_login, ''))
              USING ERRCODE = '22023';
    END IF;
    IF p_kind IN ('steward', 'admin') THEN
        IF p_group IS NULL OR NOT EXISTS (SELECT 1 FROM core.library_group g WHERE g.group_code = p_group) THEN
            RAISE EXCEPTION 'group % is not in the registry', quote_literal(coalesce(p_group, ''))
                  USING ERRCODE = '22023';
        END IF;
    ELSIF p_group IS NOT NULL THEN
        RAISE EXCEPTION 'role % is not per group: give no group', p_kind USING ERRCODE = '22023';
    END IF;
    IF NOT access.may_manage(p_kind, p_group) THEN
        RAISE EXCEPTION 'permission denied: % may not grant % of group %', session_user, p_kind,
              coalesce(p_group, '-') USING ERRCODE = '42501';
    END IF;

    SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolbypassrls INTO existing FROM pg_roles r
    WHERE r.rolname = p_login;
    IF existing.rolname IS NULL THEN
        IF p_password_hash IS NULL THEN
            EXECUTE format('CREATE ROLE %I LOGIN', p_login);
        ELSE
            EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', p_login, p_password_hash);
        END IF;
        INSERT INTO access.login (role_name, created_by) VALUES (p_login, session_user)
        ON CONFLICT (role_name) DO NOTHING;
        created := true;
    ELSE
        IF existing.rolsuper OR existing.rolcreaterole OR existing.rolbypassrls THEN
            RAISE EXCEPTION 'login % is privileged (superuser, createrole or bypassrls); it cannot be a % login',
                  p_login, p_kind USING ERRCODE = '42501';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM access.login l WHERE l.role_name = p_login)
           AND NOT access.may_manage('pipeline', NULL) THEN
            RAISE EXCEPTION 'login % was not created by lienthong; only the warehouse owner may grant it', p_login
                  USING ERRCODE = '42501';
        END IF;
        IF p_password_hash IS NOT NULL THEN
            IF EXISTS (SELECT 1 FROM access.steward_group s WHERE s.role_name = p_login
                       AND NOT access.may_manage('steward', s.group_code)) THEN
                RAISE EXCEPTION 'login % stewards a group you do not administer; its password is not yours to set',
                      p_login USING ERRCODE = '42501';
            END IF;
            EXECUTE format('ALTER ROLE %I PASSWORD %L', p_login, p_password_hash);
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN', p_login);
    END IF;

    IF NOT pg_has_role(p_login, group_role, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', group_role, p_login);
        changed := 1;
    END IF;
    IF p_kind = 'steward' THEN
        INSERT INTO access.steward_group (role_name, group_code, granted_by) VALUES (p_login, p_group, session_user)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        PERFORM access.secure();  -- quality tables added since the last migration get their policies now
    ELSIF p_kind = 'admin' THEN
        INSERT INTO access.group_admin (role_name, group_code, granted_by) VALUES (p_login, p_group, session_user)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
    END IF;
    RETURN CASE WHEN created THEN 'created' WHEN changed + inserted > 0 THEN 'granted' ELSE 'unchanged' END;
END
$$;

CREATE FUNCTION access.revoke_login(p_kind text, p_login text, p_group text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    group_role text := 'lienthong_' || p_kind;
    removed integer := 0;
    still_needed boolean := false;
BEGIN
    IF p_kind NOT IN ('steward', 'admin', 'analyst', 'pipeline') THEN
        RAISE EXCEPTION 'unknown role kind %: steward, admin, analyst or pipeline', p_kind USING ERRCODE = '22023';
    END IF;
    IF NOT access.may_manage(p_kind, p_group) THEN
        RAISE EXCEPTION 'permission denied: % may not revoke % of group %', session_user, p_kind,
              coalesce(p_group, '-') USING ERRCODE = '42501';
    END IF;
    IF p_kind = 'steward' THEN
        DELETE FROM access.steward_group WHERE role_name = p_login AND group_code = p_group;
        GET DIAGNOSTICS removed = ROW_COUNT;
        still_needed := EXISTS (SELECT 1 FROM access.steward_group WHERE role_name = p_login);
    ELSIF p_kind = 'admin' THEN
        DELETE FROM access.group_admin WHERE role_name = p_login AND group_code = p_group;
        GET DIAGNOSTICS removed = ROW_COUNT;
        still_needed := EXISTS (SELECT 1 FROM access.group_admin WHERE role_name = p_login);
    END IF;
    IF NOT still_needed AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_login)
       AND pg_has_role(p_login, group_role, 'MEMBER') THEN
        EXECUTE format('REVOKE %I FROM %I', group_role, p_login);
        removed := removed + 1;
    END IF;
    RETURN CASE WHEN removed > 0 THEN 'revoked' ELSE 'unchanged' END;
END
$$;

REVOKE ALL ON FUNCTION access.may_manage(text, text), access.grant_login(text, text, text, text),
                       access.revoke_login(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION access.may_manage(text, text), access.grant_login(text, text, text, text),
                          access.revoke_login(text, text, text) TO lienthong_admin;

-- ---------------------------------------------------------------- tables created later by this owner
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO lienthong_pipeline;
ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO lienthong_pipeline;
ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO lienthong_pipeline;
ALTER DEFAULT PRIVILEGES IN SCHEMA marts GRANT SELECT ON TABLES TO lienthong_analyst;

SELECT count(*) FROM access.secure();
