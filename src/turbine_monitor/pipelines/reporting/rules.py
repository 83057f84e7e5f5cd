"""Which warehouse rows a reporting run reads, a partition of farms at a time (`work:` and
`query:` of `alerts@to_report` in `conf/base/catalog.yml`). A farm has days to report
when alert detection set its `alert_detection.report_from` (the earliest record it
recomputed from since the last report), or when it has no `kpi_daily` row yet (a
warehouse from before reporting: its whole history). A run reads the farm's predictions
and alert episodes from the first day that can change: the day of `report_from`, or the
farm's last reported day if earlier (its stamps due grow as records arrive). The SQL is
standard (LEAST, CASE, unnest) so that it runs on PostgreSQL too."""

from __future__ import annotations

from turbine_monitor.values import WarehouseQuery

_FARMS = "farm AS (SELECT turbine_id, farm_id FROM turbines WHERE farm_id IN (SELECT unnest($farms)))"


def _report_start() -> str:
    """SQL: per farm of `farm` with days to report, the `report_from` and `updated_at` of
    its `alert_detection` row as read (for the compare-and-clear of the save), and
    `from_ts`, the midnight (UTC) its report starts at (NULL: its first record)."""
    return """pending AS (
            SELECT farm_id, min(report_from) AS report_from, max(updated_at) AS detected_at
            FROM alert_detection WHERE farm_id IN (SELECT farm_id FROM farm) GROUP BY farm_id),
        reported AS (SELECT farm_id, max(day) AS last_day FROM kpi_daily GROUP BY farm_id),
        start AS (
            SELECT p.farm_id, p.report_from, p.detected_at,
                   CAST(CASE WHEN r.last_day IS NOT NULL
                             THEN least(CAST(p.report_from AS DATE), r.last_day) END
                        AS TIMESTAMPTZ) AS from_ts
            FROM pending p LEFT JOIN reported r USING (farm_id)
            WHERE p.report_from IS NOT NULL OR r.last_day IS NULL)"""


def reporting_work() -> WarehouseQuery:
    """Per farm with days to report, a weight: its predictions from where its report
    starts."""
    return WarehouseQuery(f"""
        WITH farm AS (SELECT turbine_id, farm_id FROM turbines), {_report_start()}
        SELECT s.farm_id, count(p.ts) AS weight
        FROM start s JOIN farm f USING (farm_id)
        LEFT JOIN predictions p ON p.turbine_id = f.turbine_id
             AND p.ts >= coalesce(s.from_ts, '-infinity'::TIMESTAMPTZ)
        GROUP BY s.farm_id ORDER BY s.farm_id""", {})


def reporting_inputs(farms: list[str]) -> dict[str, WarehouseQuery]:
    """What a reporting run of `farms` reads, in one snapshot:

    - `farms`: per farm with days to report, `from_ts` (the midnight its report starts
      at; NULL: its first record's day), and `report_from` and `detected_at` as read.
    - `turbines`: the farms' turbines (turbine_id, farm_id).
    - `records`: the farms' predictions from `from_ts` on (turbine_id, farm_id, ts,
      power_kw, expected_power_kw).
    - `alerts`: their turbines' alert episodes that end at or after `from_ts` or are
      open (turbine_id, kind, start_ts, end_ts).
    """
    ctes = f"WITH {_FARMS}, {_report_start()}"
    arguments = {"farms": list(farms)}
    since = "coalesce(s.from_ts, '-infinity'::TIMESTAMPTZ)"
    return {
        "farms": WarehouseQuery(f"""{ctes}
            SELECT farm_id, from_ts, report_from, detected_at FROM start ORDER BY farm_id""", arguments),
        "turbines": WarehouseQuery(f"WITH {_FARMS} SELECT turbine_id, farm_id FROM farm", arguments),
        "records": WarehouseQuery(f"""{ctes}
            SELECT p.turbine_id, f.farm_id, p.ts, p.power_kw, p.expected_power_kw
            FROM predictions p JOIN farm f USING (turbine_id) JOIN start s USING (farm_id)
            WHERE p.ts >= {since}""", arguments),
        "alerts": WarehouseQuery(f"""{ctes}
            SELECT a.turbine_id, a.kind, a.start_ts, a.end_ts
            FROM alerts a JOIN farm f USING (turbine_id) JOIN start s USING (farm_id)
            WHERE a.end_ts IS NULL OR a.end_ts >= {since}""", arguments),
    }
