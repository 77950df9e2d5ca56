-- E-mails to lead libraries about their members' quality (a tier drop, a held batch): one row per alert sent,
-- so a re-run of the quality_review DAG never sends the same alert twice.
CREATE TABLE IF NOT EXISTS quality.alert (
    kind          text NOT NULL CHECK (kind IN ('tier_drop', 'held_batch')),
    batch_id      bigint NOT NULL,
    library_code  text NOT NULL,
    recipient     text NOT NULL,
    group_code    text NOT NULL,
    sent_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, batch_id, recipient)
);

COMMENT ON TABLE quality.alert IS
  'Alerts e-mailed to a group''s lead library: a member''s quality tier dropped, or its newest export was held.';
