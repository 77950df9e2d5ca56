-- The two foreign keys that every loaded row fires, checked once per statement instead of once per row.
--
-- A copy references its record version (core.item.record_id) and a version the batch that loaded it with its
-- library (core.record.loaded_by_batch, library_code). As declared foreign keys, PostgreSQL checked each new row
-- by itself: a query and a row lock per copy and per version, about 8 µs each, 40-60 ms of a 1,700-record
-- export with its 5,000 copies (EXPLAIN ANALYZE), a fifth of the warehouse's share of an ingest. The triggers
-- below keep the same rules for every writer with one set-based query per statement (a COPY is one), over the
-- rows it added (a transition table), and lock the rows they reference as a foreign key does, so a concurrent
-- delete waits for the loading transaction and then sees its rows.
--
-- Same rules, same errors (SQLSTATE 23503 naming the constraint):
--   * a new or changed copy must reference an existing record version; deleting versions deletes their copies
--     (ON DELETE CASCADE, also on TRUNCATE); a version's record_id does not change while copies reference it;
--   * a new or changed version must reference a batch of its own library; a batch that loaded versions is not
--     deleted, nor its number or library changed.
-- A delete that cascades or restricts must run at READ COMMITTED (the default): at a stricter level its
-- snapshot could miss rows another transaction committed meanwhile, which a declared key would see.

ALTER TABLE core.item DROP CONSTRAINT item_record_id_fkey;
ALTER TABLE core.record DROP CONSTRAINT record_loaded_by_batch_fkey;

-- PostgreSQL's own wording: "insert or update on table item violates ...", "update or delete on table batch
-- violates ... on table record".
CREATE FUNCTION core.fk_violation(constraint_name text, table_name text, referencing text, detail text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF table_name = referencing THEN
        RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint "%"', table_name,
                        constraint_name
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = constraint_name, SCHEMA = 'core',
                  TABLE = table_name, DETAIL = detail;
    END IF;
    RAISE EXCEPTION 'update or delete on table "%" violates foreign key constraint "%" on table "%"', table_name,
                    constraint_name, referencing
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = constraint_name, SCHEMA = 'core',
              TABLE = table_name, DETAIL = detail;
END $$;

CREATE FUNCTION core.fk_require_read_committed(action text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION '% must run at READ COMMITTED (its foreign keys are checked per statement)', action
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END $$;

-- ------------------------------------------------------------------ core.item.record_id → core.record

CREATE FUNCTION core.item_record_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    locked bigint;
    missing bigint;
BEGIN
    PERFORM 1 FROM (SELECT DISTINCT a.record_id FROM added a) a JOIN core.record r ON r.record_id = a.record_id
        FOR KEY SHARE OF r;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < (SELECT count(DISTINCT a.record_id) FROM added a) THEN
        SELECT a.record_id INTO missing FROM added a
         WHERE NOT EXISTS (SELECT 1 FROM core.record r WHERE r.record_id = a.record_id) LIMIT 1;
        PERFORM core.fk_violation('item_record_id_fkey', 'item', 'item',
                                  format('Key (record_id)=(%s) is not present in table "record".', missing));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER item_record_id_fkey_insert AFTER INSERT ON core.item
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION core.item_record_check();
CREATE TRIGGER item_record_id_fkey_update AFTER UPDATE ON core.item
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION core.item_record_check();

CREATE FUNCTION core.record_items_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM removed) THEN
        PERFORM core.fk_require_read_committed('DELETE FROM core.record');
        DELETE FROM core.item i USING removed r WHERE i.record_id = r.record_id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER item_record_id_fkey_cascade AFTER DELETE ON core.record
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION core.record_items_delete();

CREATE FUNCTION core.record_items_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    -- After the whole TRUNCATE: empty already when core.item was truncated with core.record (TRUNCATE itself
    -- cannot be run on a table the statement is truncating).
    DELETE FROM core.item;
    RETURN NULL;
END $$;

CREATE TRIGGER item_record_id_fkey_truncate AFTER TRUNCATE ON core.record
    FOR EACH STATEMENT EXECUTE FUNCTION core.record_items_truncate();

CREATE FUNCTION core.record_id_keep() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM core.item i WHERE i.record_id = OLD.record_id) THEN
        PERFORM core.fk_violation('item_record_id_fkey', 'record', 'item',
                                  format('Key (record_id)=(%s) is still referenced from table "item".', OLD.record_id));
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER item_record_id_fkey_key AFTER UPDATE OF record_id ON core.record
    FOR EACH ROW WHEN (OLD.record_id IS DISTINCT FROM NEW.record_id) EXECUTE FUNCTION core.record_id_keep();

-- ------------------------------------------------ core.record (loaded_by_batch, library_code) → core.batch

CREATE FUNCTION core.record_batch_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    locked bigint;
    missing record;
BEGIN
    PERFORM 1 FROM (SELECT DISTINCT a.loaded_by_batch, a.library_code FROM added a) a
        JOIN core.batch b ON b.batch_id = a.loaded_by_batch AND b.library_code = a.library_code
        FOR KEY SHARE OF b;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked < (SELECT count(*) FROM (SELECT DISTINCT a.loaded_by_batch, a.library_code FROM added a) keys) THEN
        SELECT a.loaded_by_batch, a.library_code INTO missing FROM added a
         WHERE NOT EXISTS (SELECT 1 FROM core.batch b
                            WHERE b.batch_id = a.loaded_by_batch AND b.library_code = a.library_code) LIMIT 1;
        PERFORM core.fk_violation('record_loaded_by_batch_fkey', 'record', 'record',
            format('Key (loaded_by_batch, library_code)=(%s, %s) is not present in table "batch".',
                   missing.loaded_by_batch, missing.library_code));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER record_loaded_by_batch_fkey_insert AFTER INSERT ON core.record
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION core.record_batch_check();

CREATE FUNCTION core.record_batch_recheck() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM 1 FROM core.batch b WHERE b.batch_id = NEW.loaded_by_batch AND b.library_code = NEW.library_code
       FOR KEY SHARE OF b;
    IF NOT FOUND THEN
        PERFORM core.fk_violation('record_loaded_by_batch_fkey', 'record', 'record',
            format('Key (loaded_by_batch, library_code)=(%s, %s) is not present in table "batch".',
                   NEW.loaded_by_batch, NEW.library_code));
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER record_loaded_by_batch_fkey_update AFTER UPDATE OF loaded_by_batch, library_code ON core.record
    FOR EACH ROW WHEN (OLD.loaded_by_batch IS DISTINCT FROM NEW.loaded_by_batch
                       OR OLD.library_code IS DISTINCT FROM NEW.library_code)
    EXECUTE FUNCTION core.record_batch_recheck();

CREATE FUNCTION core.batch_records_restrict() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    kept record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM removed) THEN
        RETURN NULL;
    END IF;
    PERFORM core.fk_require_read_committed('DELETE FROM core.batch');
    SELECT b.batch_id, b.library_code INTO kept FROM removed b
     WHERE EXISTS (SELECT 1 FROM core.record r WHERE r.loaded_by_batch = b.batch_id AND r.library_code = b.library_code)
     LIMIT 1;
    IF FOUND THEN
        PERFORM core.fk_violation('record_loaded_by_batch_fkey', 'batch', 'record',
            format('Key (batch_id, library_code)=(%s, %s) is still referenced from table "record".',
                   kept.batch_id, kept.library_code));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER record_loaded_by_batch_fkey_delete AFTER DELETE ON core.batch
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION core.batch_records_restrict();

CREATE FUNCTION core.batch_key_keep() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM core.record r WHERE r.loaded_by_batch = OLD.batch_id AND r.library_code = OLD.library_code)
    THEN
        PERFORM core.fk_violation('record_loaded_by_batch_fkey', 'batch', 'record',
            format('Key (batch_id, library_code)=(%s, %s) is still referenced from table "record".',
                   OLD.batch_id, OLD.library_code));
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER record_loaded_by_batch_fkey_key AFTER UPDATE OF batch_id, library_code ON core.batch
    FOR EACH ROW WHEN (OLD.batch_id IS DISTINCT FROM NEW.batch_id OR OLD.library_code IS DISTINCT FROM NEW.library_code)
    EXECUTE FUNCTION core.batch_key_keep();
