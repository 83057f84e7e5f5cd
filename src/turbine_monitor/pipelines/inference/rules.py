"""Which warehouse rows an inference run reads. Each rule is a parameterised query that
a catalog dataset runs (`query:` in `conf/base/catalog.yml`), so that the filtering
happens in the database and a run reads what it needs, not whole tables. The SQL is
standard (NOT EXISTS, LEAST, interval arithmetic) so that it runs on PostgreSQL too."""

from __future__ import annotations

from turbine_monitor.values import WarehouseQuery

SCORING_COLUMNS = ["turbine_id", "ts", "power_kw", "wind_speed_ms", "wind_direction_deg", "outdoor_temp_c",
                   "pitch_deg"]


def rows_to_score(history_hours: float) -> WarehouseQuery:
    """The `scada` rows without a prediction and, before the first of them, the
    `history_hours` of rows that the model's trailing features read; `scored` says which
    rows are history. Sorted by turbine and time."""
    columns = ", ".join(f"s.{c}" for c in SCORING_COLUMNS)
    return WarehouseQuery(f"""
        WITH first_unscored AS (
            SELECT min(s.ts) AS ts FROM scada s
            WHERE NOT EXISTS (SELECT 1 FROM predictions p WHERE p.turbine_id = s.turbine_id AND p.ts = s.ts))
        SELECT {columns}, p.turbine_id IS NOT NULL AS scored
        FROM scada s LEFT JOIN predictions p ON p.turbine_id = s.turbine_id AND p.ts = s.ts
        WHERE s.ts >= (SELECT ts FROM first_unscored) - $history_hours * INTERVAL '1 hour'
        ORDER BY s.turbine_id, s.ts""", {"history_hours": history_hours})


def predictions_to_detect(recompute_days: float, lookback_days: float) -> WarehouseQuery:
    """The predictions whose alert episodes can still change, from `recompute_from` on,
    and the `lookback_days` before it that the detector's trailing windows and baselines
    read. `recompute_from` is the earliest of: the first prediction scored since the
    last detection (`alert_detection.scored_through`), the start of an open alert, and
    `recompute_days` before the newest prediction (a stoppage not yet confirmed may reach
    back). Every row also carries `scored_through`, the newest `scored_at` read."""
    return WarehouseQuery("""
        WITH since AS (SELECT least(
            (SELECT max(ts) FROM predictions) - $recompute_days * INTERVAL '1 day',
            (SELECT min(start_ts) FROM alerts WHERE end_ts IS NULL),
            (SELECT min(ts) FROM predictions WHERE scored_at > coalesce(
                (SELECT max(scored_through) FROM alert_detection), '-infinity'::TIMESTAMPTZ))) AS ts)
        SELECT p.turbine_id, p.ts, p.power_kw, p.wind_speed_ms, p.expected_power_kw, p.residual_kw,
               since.ts AS recompute_from, (SELECT max(scored_at) FROM predictions) AS scored_through
        FROM predictions p, since
        WHERE p.ts >= since.ts - $lookback_days * INTERVAL '1 day'""",
                          {"recompute_days": recompute_days, "lookback_days": lookback_days})
