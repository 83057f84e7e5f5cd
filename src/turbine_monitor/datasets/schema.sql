-- The warehouse schema (public contract, see DESIGN.md). Applied idempotently
-- on a process's first connection to a warehouse file.

-- Every turbine of the fleet, from the farms' asset tables (conf/base/farms.yml); turbine
-- ids are unique across the fleet, so every table joins to its farm through it.
CREATE TABLE IF NOT EXISTS turbines (
    farm_id             VARCHAR NOT NULL,
    turbine_id          VARCHAR PRIMARY KEY,
    latitude            DOUBLE,
    longitude           DOUBLE,
    rated_power_kw      DOUBLE
);

-- `scada` and `predictions` have no key: an index of every (turbine_id, ts) makes each
-- attach and detach of the file, and each insert, cost milliseconds more per million rows
-- (warehouse.py). Each row is still there once: ingestion skips the records already in
-- `scada` inside its transaction, scoring inserts only rows still in `scoring_queue`.
CREATE TABLE IF NOT EXISTS scada (
    turbine_id          VARCHAR NOT NULL,
    ts                  TIMESTAMPTZ NOT NULL,      -- UTC, start of the 10-minute record
    power_kw            DOUBLE,
    wind_speed_ms       DOUBLE,
    wind_direction_deg  DOUBLE,
    outdoor_temp_c      DOUBLE,
    pitch_deg           DOUBLE,
    nacelle_angle_deg   DOUBLE,
    vane_angle_deg      DOUBLE,
    source_file         VARCHAR NOT NULL,
    ingested_at         TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS scada_quarantine (
    farm_id         VARCHAR,
    source_file     VARCHAR NOT NULL,      -- <farm_id>/<file name>
    source_row      BIGINT,                -- 0-based position of the record in its file
    reason          VARCHAR NOT NULL,      -- machine-readable, e.g. invalid_timestamp
    detail          VARCHAR,               -- what was wrong, for a person
    raw_record      VARCHAR NOT NULL,      -- the record as delivered, as a JSON object
    quarantined_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS ingested_files (
    checksum          VARCHAR PRIMARY KEY, -- sha256 of the file content
    farm_id           VARCHAR,
    source_file       VARCHAR NOT NULL,    -- <farm_id>/<file name>
    size_bytes        BIGINT NOT NULL,
    modified_ns       BIGINT,              -- file modification time when read, ns since the epoch
    status            VARCHAR NOT NULL,    -- ingested | empty | rejected
    reason            VARCHAR,             -- why a file was rejected or empty
    rows_read         BIGINT NOT NULL,     -- = rows_accepted + rows_duplicate + rows_quarantined
    rows_accepted     BIGINT NOT NULL,
    rows_duplicate    BIGINT NOT NULL,     -- identical to a row already ingested: a no-op
    rows_quarantined  BIGINT NOT NULL,
    ingested_at       TIMESTAMPTZ NOT NULL
);

-- Warehouses created before `modified_ns` existed: their files are recognised by checksum.
ALTER TABLE ingested_files ADD COLUMN IF NOT EXISTS modified_ns BIGINT;
-- Warehouses created before farms: their files and quarantined records have no farm.
ALTER TABLE ingested_files ADD COLUMN IF NOT EXISTS farm_id VARCHAR;
ALTER TABLE scada_quarantine ADD COLUMN IF NOT EXISTS farm_id VARCHAR;

CREATE TABLE IF NOT EXISTS predictions (
    turbine_id          VARCHAR NOT NULL,
    ts                  TIMESTAMPTZ NOT NULL,
    expected_power_kw   DOUBLE,               -- NULL when the row could not be scored
    power_kw            DOUBLE,
    residual_kw         DOUBLE,               -- power_kw - expected_power_kw
    wind_speed_ms       DOUBLE,
    model_version       VARCHAR NOT NULL,     -- registered version of turbine-power-nbm
    unscored_reason     VARCHAR,              -- why expected_power_kw is NULL
    scored_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS alerts (
    turbine_id                  VARCHAR NOT NULL,
    kind                        VARCHAR NOT NULL,   -- underperformance | stopped
    start_ts                    TIMESTAMPTZ NOT NULL,
    end_ts                      TIMESTAMPTZ,        -- NULL while the alert is open
    energy_lost_kwh             DOUBLE,
    records                     BIGINT,             -- records in the episode
    operating_records           BIGINT,             -- of which evidence (stopped: stop) records
    mean_relative_residual      DOUBLE,             -- sum(power - expected) / sum(expected) over those
    deficit_at_open             DOUBLE,             -- underperformance: relative deficit when it opened
    channel                     VARCHAR,            -- underperformance: peer | absolute | both
    opened_at                   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (turbine_id, kind, start_ts)
);

-- The `scada` rows not scored yet: ingestion adds each row it accepts, scoring removes the
-- rows it predicts, in the same transactions (a run reads the work, not the history).
-- No key: it holds only rows `scada` accepted once each, and an index would slow down the
-- backlog's inserts and deletes.
CREATE TABLE IF NOT EXISTS scoring_queue (
    turbine_id          VARCHAR NOT NULL,
    ts                  TIMESTAMPTZ NOT NULL
);

-- The one-off changes to an existing warehouse made so far (warehouse.py: MIGRATIONS).
CREATE TABLE IF NOT EXISTS warehouse_migrations (
    name                VARCHAR PRIMARY KEY,
    applied_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- How far alert detection has read, per farm: the newest `predictions.scored_at` of its
-- last run. The next run recomputes from the first prediction scored after it, or from
-- `resume_from`, the start of a stop run that was still in progress, if earlier.
CREATE TABLE IF NOT EXISTS alert_detection (
    farm_id                     VARCHAR,
    scored_through              TIMESTAMPTZ NOT NULL,
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE alert_detection ADD COLUMN IF NOT EXISTS farm_id VARCHAR;
ALTER TABLE alert_detection ADD COLUMN IF NOT EXISTS resume_from TIMESTAMPTZ;

-- What the alert detector keeps per turbine and UTC day, so that a run reads a fixed
-- window of records instead of its whole lookback: the day's evidence records and the
-- sums of its own and peer channels (detection.py), from which baselines are medians.
CREATE TABLE IF NOT EXISTS detector_days (
    turbine_id                  VARCHAR NOT NULL,
    day                         DATE NOT NULL,
    evidence                    DOUBLE NOT NULL,
    matched                     DOUBLE NOT NULL,
    own_num                     DOUBLE NOT NULL,
    own_den                     DOUBLE NOT NULL,
    peer_num                    DOUBLE NOT NULL,
    peer_den                    DOUBLE NOT NULL,
    PRIMARY KEY (turbine_id, day)
);

-- What the alert detector keeps per evidence record (detection.py, EVIDENCE_COLUMNS), so
-- that a run continues from its turbines' last ones instead of reading their window: its
-- ordinal among the turbine's evidence records, the running totals of the windows' terms
-- since the turbine's first (a window's sum is the difference of two) and of the day
-- sums since the UTC day's first, the open and close persistence counts, and whether an
-- alert was open. Rows from a farm's `since` on are replaced with its episodes, in the
-- same transaction; no key, for the same reason as `scoring_queue`.
CREATE TABLE IF NOT EXISTS detector_evidence (
    turbine_id                  VARCHAR NOT NULL,
    ts                          TIMESTAMPTZ NOT NULL,
    ordinal                     BIGINT NOT NULL,
    total_own_num               DOUBLE NOT NULL,
    total_own_den               DOUBLE NOT NULL,
    total_peer_num              DOUBLE NOT NULL,
    total_peer_den              DOUBLE NOT NULL,
    day_evidence                DOUBLE NOT NULL,
    day_matched                 DOUBLE NOT NULL,
    day_own_num                 DOUBLE NOT NULL,
    day_own_den                 DOUBLE NOT NULL,
    day_peer_num                DOUBLE NOT NULL,
    day_peer_den                DOUBLE NOT NULL,
    open_streak                 BIGINT NOT NULL,
    calm_streak                 BIGINT NOT NULL,
    alert_open                  BOOLEAN NOT NULL
);

-- What the alert detector keeps of each open underperformance episode (detection.py,
-- OPEN_EPISODE_COLUMNS): its sums through `through_ts`, the turbine's last record read,
-- so that a run whose new records all come later continues the episode instead of
-- reading its records again. Replaced per farm with its episodes, in the same transaction.
CREATE TABLE IF NOT EXISTS detector_episodes (
    turbine_id                  VARCHAR NOT NULL,
    kind                        VARCHAR NOT NULL,
    start_ts                    TIMESTAMPTZ NOT NULL,
    through_ts                  TIMESTAMPTZ NOT NULL,
    records                     BIGINT NOT NULL,
    operating_records           BIGINT NOT NULL,
    energy_lost_kwh             DOUBLE NOT NULL,
    residual_kw_sum             DOUBLE NOT NULL,
    expected_kw_sum             DOUBLE NOT NULL,
    deficit_at_open             DOUBLE,
    channel                     VARCHAR,
    PRIMARY KEY (turbine_id, kind, start_ts)
);

-- Performance per turbine and UTC day (the reporting pipeline; docs/reporting.md gives
-- the definitions). energy_kwh + lost_stopped_kwh + lost_underperformance_kwh
-- + lost_data_gap_kwh + other_kwh = expected_kwh on every row. A run replaces a farm's
-- days from the day of its `alert_detection.report_from`, or its last reported day if
-- earlier, on (the days that can still change).
CREATE TABLE IF NOT EXISTS kpi_daily (
    farm_id                     VARCHAR NOT NULL,
    turbine_id                  VARCHAR NOT NULL,
    day                         DATE NOT NULL,         -- UTC
    stamps                      BIGINT NOT NULL,       -- 10-minute stamps due: 144, fewer on the farm's latest day
    valid_stamps                BIGINT NOT NULL,       -- of which with a valid record
    energy_kwh                  DOUBLE NOT NULL,       -- produced
    expected_kwh                DOUBLE NOT NULL,       -- by the champion's expectations (estimated for gaps)
    lost_stopped_kwh            DOUBLE NOT NULL,       -- >= 0, during `stopped` alerts
    lost_underperformance_kwh   DOUBLE NOT NULL,       -- >= 0, during `underperformance` alerts
    lost_data_gap_kwh           DOUBLE NOT NULL,       -- >= 0, stamps with no valid record
    other_kwh                   DOUBLE NOT NULL,       -- the signed remainder
    time_availability           DOUBLE,                -- IEC 61400-26-1 in spirit; NULL without a valid stamp
    energy_availability         DOUBLE,                -- IEC 61400-26-2 in spirit
    coverage                    DOUBLE NOT NULL,       -- valid_stamps / stamps
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (turbine_id, day)
);

-- Where the reporting pipeline resumes, per farm: the earliest point an alert detection
-- recomputed from since the last report (set by alert detection, cleared by reporting).
ALTER TABLE alert_detection ADD COLUMN IF NOT EXISTS report_from TIMESTAMPTZ;

-- Roll-ups of kpi_daily per turbine and month, and per farm and day: the sums, and the
-- ratios recomputed from them, never averaged. A day's stamps with a valid record outside
-- a `stopped` alert are time_availability * valid_stamps (an integer, rounded back), its
-- expected energy over valid stamps is expected_kwh - lost_data_gap_kwh.
CREATE OR REPLACE VIEW kpi_monthly AS
SELECT farm_id, turbine_id, CAST(date_trunc('month', day) AS DATE) AS month, count(*) AS days,
       sum(stamps) AS stamps, sum(valid_stamps) AS valid_stamps, sum(energy_kwh) AS energy_kwh,
       sum(expected_kwh) AS expected_kwh, sum(lost_stopped_kwh) AS lost_stopped_kwh,
       sum(lost_underperformance_kwh) AS lost_underperformance_kwh,
       sum(lost_data_gap_kwh) AS lost_data_gap_kwh, sum(other_kwh) AS other_kwh,
       sum(round(coalesce(time_availability, 0) * valid_stamps)) / nullif(sum(valid_stamps), 0)
           AS time_availability,
       CASE WHEN sum(expected_kwh - lost_data_gap_kwh) > 0
            THEN 1 - sum(lost_stopped_kwh) / sum(expected_kwh - lost_data_gap_kwh) END AS energy_availability,
       CAST(sum(valid_stamps) AS DOUBLE) / sum(stamps) AS coverage
FROM kpi_daily GROUP BY farm_id, turbine_id, CAST(date_trunc('month', day) AS DATE);

CREATE OR REPLACE VIEW kpi_farm_daily AS
SELECT farm_id, day, count(*) AS turbines,
       sum(stamps) AS stamps, sum(valid_stamps) AS valid_stamps, sum(energy_kwh) AS energy_kwh,
       sum(expected_kwh) AS expected_kwh, sum(lost_stopped_kwh) AS lost_stopped_kwh,
       sum(lost_underperformance_kwh) AS lost_underperformance_kwh,
       sum(lost_data_gap_kwh) AS lost_data_gap_kwh, sum(other_kwh) AS other_kwh,
       sum(round(coalesce(time_availability, 0) * valid_stamps)) / nullif(sum(valid_stamps), 0)
           AS time_availability,
       CASE WHEN sum(expected_kwh - lost_data_gap_kwh) > 0
            THEN 1 - sum(lost_stopped_kwh) / sum(expected_kwh - lost_data_gap_kwh) END AS energy_availability,
       CAST(sum(valid_stamps) AS DOUBLE) / sum(stamps) AS coverage
FROM kpi_daily GROUP BY farm_id, day;

-- Who acknowledged which alert (the dashboard's Alerts page). Keyed like `alerts`, in a
-- table of its own so that no alert recomputation touches it; an acknowledgement applies
-- to the alert of its turbine and kind whose span holds its `start_ts`.
CREATE TABLE IF NOT EXISTS alert_acknowledgements (
    turbine_id                  VARCHAR NOT NULL,
    kind                        VARCHAR NOT NULL,
    start_ts                    TIMESTAMPTZ NOT NULL,
    acknowledged_by             VARCHAR NOT NULL,
    acknowledged_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    note                        VARCHAR,
    PRIMARY KEY (turbine_id, kind, start_ts)
);
