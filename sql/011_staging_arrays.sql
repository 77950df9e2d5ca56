-- Staging holds a record's lists (ISBNs, keywords, subjects, repairs) as text[], as core does: the loader
-- COPYs array literals, and apply copies the columns instead of unpacking JSON row by row.
-- Staging only holds batches in flight; any row left is converted without loss.
CREATE OR REPLACE FUNCTION pg_temp.jsonb_text_array(value jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE AS
$$ SELECT coalesce(array_agg(element ORDER BY position), '{}') FROM jsonb_array_elements_text(value)
   WITH ORDINALITY AS e(element, position) $$;

ALTER TABLE staging.record
    ALTER COLUMN isbns TYPE text[] USING pg_temp.jsonb_text_array(isbns),
    ALTER COLUMN keywords TYPE text[] USING pg_temp.jsonb_text_array(keywords),
    ALTER COLUMN subjects TYPE text[] USING pg_temp.jsonb_text_array(subjects),
    ALTER COLUMN repairs TYPE text[] USING pg_temp.jsonb_text_array(repairs);
