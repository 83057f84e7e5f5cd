-- What the warehouse has on PostgreSQL beyond schema.sql (the cluster profile,
-- postgres.py applies schema.sql with DOUBLE spelt DOUBLE PRECISION, then this; both
-- idempotently, on a process's first connection to a database, under an advisory lock).
-- The tables and columns are schema.sql's; warehouse.py's MIGRATIONS serve DuckDB files
-- of earlier versions only (a PostgreSQL warehouse starts at the current shape, and
-- postgres.py records them as applied).
--
-- Several workers write at once: every record table has its unique key, so that a row
-- two workers write is stored once (their inserts skip a conflicting row or replace it).
-- DuckDB leaves these keys out for its attach costs (schema.sql); PostgreSQL keeps them.
CREATE UNIQUE INDEX IF NOT EXISTS scada_key ON scada (turbine_id, ts);
CREATE UNIQUE INDEX IF NOT EXISTS predictions_key ON predictions (turbine_id, ts);
-- Scoring's DELETE ... RETURNING from the queue decides which worker predicts a row.
CREATE UNIQUE INDEX IF NOT EXISTS scoring_queue_key ON scoring_queue (turbine_id, ts);
CREATE UNIQUE INDEX IF NOT EXISTS detector_evidence_key ON detector_evidence (turbine_id, ts);
CREATE UNIQUE INDEX IF NOT EXISTS alert_detection_key ON alert_detection (farm_id);

-- What the rules and saves look rows up by, besides the keys: alert detection's work is
-- the predictions scored since its last run, it trims and reads kept evidence by ordinal,
-- ingestion quarantines by file.
CREATE INDEX IF NOT EXISTS predictions_scored_at ON predictions (scored_at);
CREATE INDEX IF NOT EXISTS detector_evidence_ordinal ON detector_evidence (turbine_id, ordinal);
CREATE INDEX IF NOT EXISTS scada_quarantine_source_file ON scada_quarantine (source_file);
