-- The warehouse schema (public contract, see DESIGN.md). Applied idempotently
-- on a process's first connection to a warehouse file.

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
    ingested_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (turbine_id, ts)
);

CREATE TABLE IF NOT EXISTS scada_quarantine (
    source_file     VARCHAR NOT NULL,
    source_row      BIGINT,                -- 0-based position of the record in its file
    reason          VARCHAR NOT NULL,      -- machine-readable, e.g. invalid_timestamp
    detail          VARCHAR,               -- what was wrong, for a person
    raw_record      VARCHAR NOT NULL,      -- the record as delivered, as a JSON object
    quarantined_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS ingested_files (
    checksum          VARCHAR PRIMARY KEY, -- sha256 of the file content
    source_file       VARCHAR NOT NULL,
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

CREATE TABLE IF NOT EXISTS predictions (
    turbine_id          VARCHAR NOT NULL,
    ts                  TIMESTAMPTZ NOT NULL,
    expected_power_kw   DOUBLE,               -- NULL when the row could not be scored
    power_kw            DOUBLE,
    residual_kw         DOUBLE,               -- power_kw - expected_power_kw
    wind_speed_ms       DOUBLE,
    model_version       VARCHAR NOT NULL,     -- registered version of turbine-power-nbm
    unscored_reason     VARCHAR,              -- why expected_power_kw is NULL
    scored_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (turbine_id, ts)
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

-- How far alert detection has read: the newest `predictions.scored_at` of its last run.
-- The next run recomputes from the first prediction scored after it (or earlier).
CREATE TABLE IF NOT EXISTS alert_detection (
    scored_through              TIMESTAMPTZ NOT NULL,
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);
