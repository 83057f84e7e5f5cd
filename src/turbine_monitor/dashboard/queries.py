"""The dashboard's reads of the warehouse: one function per page (or per part of a page),
each returning the `values.WarehouseQuery` (or a dict of them, read in one snapshot) that
a `dashboard_*` dataset of conf/base/catalog_dashboard.yml loads.

The "fleet clock" is the newest `scada` record of the fleet: "today", "this month" and
"no recent data" are relative to it, so that a replay of 2015 and a live feed read alike.
The warehouse does every aggregation (power-curve bins, hourly residuals, monthly sums): a
page reads only what it shows. The SQL is what DuckDB and PostgreSQL read alike (the
cluster profile's conf/cluster/catalog_dashboard.yml runs the same queries there):
intervals as `INTERVAL '1 day'` and `n * INTERVAL '1 minute'`, rounding through
`rounded`, no DuckDB-only functions.
"""

from __future__ import annotations

from turbine_monitor.values import WarehouseQuery

#: The fleet clock and its day and month (UTC), as a CTE named `clock`.
CLOCK = """clock AS (SELECT max(ts) AS now, date_trunc('day', max(ts)) AS today,
                            date_trunc('month', max(ts)) AS month_start FROM scada)"""

#: Each alert with the acknowledgement that applies to it (the latest of its turbine and
#: kind whose `start_ts` falls in the alert's span), as a CTE named `acked_alerts`.
ACKED_ALERTS = """acked_alerts AS (
    SELECT a.*, t.farm_id, k.acknowledged_by, k.acknowledged_at, k.note
    FROM alerts a JOIN turbines t USING (turbine_id)
    LEFT JOIN LATERAL (
        SELECT k.acknowledged_by, k.acknowledged_at, k.note FROM alert_acknowledgements k
        WHERE k.turbine_id = a.turbine_id AND k.kind = a.kind AND k.start_ts >= a.start_ts
          AND k.start_ts <= coalesce(a.end_ts, 'infinity'::TIMESTAMPTZ)
        ORDER BY k.acknowledged_at DESC LIMIT 1) k ON true)"""

#: Energy lost (kWh) as the dashboard counts it: the categories attributed to a cause.
LOST_KWH = "lost_stopped_kwh + lost_underperformance_kwh + lost_data_gap_kwh"


def rounded(expression: str, digits: int) -> str:
    """`expression` rounded to `digits` decimals (PostgreSQL rounds to decimals only a
    NUMERIC; DuckDB's result is a float either way)."""
    return f"round(CAST({expression} AS DECIMAL(18, 6)), {digits})"


def turbines() -> WarehouseQuery:
    """Every turbine with its farm (the pages' choices)."""
    return WarehouseQuery("SELECT farm_id, turbine_id FROM turbines ORDER BY farm_id, turbine_id", {})


#: The Losses page's first choice: each farm's newest month, whichever it is by now.
LATEST_MONTH = "latest"


def months() -> WarehouseQuery:
    """The months `kpi_daily` has (newest first), as 'YYYY-MM'."""
    return WarehouseQuery(
        """
        SELECT DISTINCT substr(CAST(day AS VARCHAR), 1, 7) AS month FROM kpi_daily ORDER BY month DESC""",
        {},
    )


def fleet(stale_after_minutes: int) -> dict[str, WarehouseQuery]:
    """The Fleet page: each turbine's state, last record and energy lost today and this
    month; what needs attention first (open unacknowledged alerts, then stale data)."""
    states = f"""
        WITH {CLOCK},
        last AS (SELECT turbine_id, max(ts) AS last_record FROM scada GROUP BY turbine_id),
        open AS (SELECT turbine_id, bool_or(kind = 'stopped') AS stopped,
                        bool_or(kind = 'underperformance') AS underperforming
                 FROM alerts WHERE end_ts IS NULL GROUP BY turbine_id),
        lost AS (SELECT turbine_id,
                        sum({LOST_KWH}) FILTER (WHERE day = clock.today::DATE) AS lost_today_kwh,
                        sum({LOST_KWH}) AS lost_month_kwh
                 FROM kpi_daily, clock WHERE day >= clock.month_start::DATE GROUP BY turbine_id)
        SELECT t.farm_id, t.turbine_id,
               CASE WHEN o.stopped THEN 'stopped' WHEN o.underperforming THEN 'underperforming'
                    WHEN l.last_record IS NULL
                         OR l.last_record < clock.now - $stale_after_minutes * INTERVAL '1 minute'
                    THEN 'no recent data' ELSE 'producing' END AS state,
               l.last_record, {rounded("coalesce(x.lost_today_kwh, 0)", 1)} AS lost_today_kwh,
               {rounded("coalesce(x.lost_month_kwh, 0)", 1)} AS lost_month_kwh
        FROM turbines t CROSS JOIN clock LEFT JOIN last l USING (turbine_id)
        LEFT JOIN open o USING (turbine_id) LEFT JOIN lost x USING (turbine_id)
        ORDER BY t.farm_id, t.turbine_id"""
    attention = f"""
        WITH {CLOCK}, {ACKED_ALERTS},
        last AS (SELECT turbine_id, max(ts) AS last_record FROM scada GROUP BY turbine_id)
        SELECT priority, farm_id, turbine_id, issue, since, energy_lost_kwh FROM (
            SELECT 1 AS priority, farm_id, turbine_id, 'open ' || kind || ' alert' AS issue,
                   start_ts AS since, {rounded("energy_lost_kwh", 1)} AS energy_lost_kwh,
                   -coalesce(energy_lost_kwh, 0) AS sort_key
            FROM acked_alerts WHERE end_ts IS NULL AND acknowledged_by IS NULL
            UNION ALL
            SELECT 2, t.farm_id, t.turbine_id, 'no recent data', l.last_record, NULL,
                   extract(epoch FROM l.last_record)
            FROM turbines t CROSS JOIN clock LEFT JOIN last l USING (turbine_id)
            WHERE l.last_record IS NULL
               OR l.last_record < clock.now - $stale_after_minutes * INTERVAL '1 minute') AS issues
        ORDER BY priority, sort_key NULLS FIRST, farm_id, turbine_id"""
    parameters = {"stale_after_minutes": int(stale_after_minutes)}
    return {
        "states": WarehouseQuery(states, parameters),
        "attention": WarehouseQuery(attention, parameters),
        "clock": WarehouseQuery(f"WITH {CLOCK} SELECT now FROM clock", {}),
    }


def turbine(
    turbine_id: str,
    power_curve_days: int,
    residual_days: int,
    max_points: int = 5000,
    bin_width_ms: float = 0.5,
    min_records_per_bin: int = 3,
) -> dict[str, WarehouseQuery]:
    """The Turbine page of `turbine_id`: its last `power_curve_days` of (wind, power)
    (every k-th record beyond `max_points`), the champion's expected curve over them and
    the IEC 61400-12-style reference curve of its last year of normal operation (mean
    power per wind bin, bins of at least `min_records_per_bin` records); hourly mean
    residuals and its alerts over the last `residual_days`; its KPIs by day."""
    parameters = {"turbine_id": turbine_id, "days": int(power_curve_days), "width": float(bin_width_ms)}
    window = f"""WITH {CLOCK}, recent AS (
        SELECT ts, wind_speed_ms, power_kw, expected_power_kw FROM predictions, clock
        WHERE turbine_id = $turbine_id AND ts > clock.now - $days * INTERVAL '1 day'
          AND wind_speed_ms IS NOT NULL AND power_kw IS NOT NULL)"""
    scatter = f"""{window}, numbered AS (
            SELECT *, row_number() OVER (ORDER BY ts) AS n, count(*) OVER () AS total FROM recent)
        SELECT ts, wind_speed_ms, power_kw FROM numbered
        WHERE n % CAST(greatest(1, ceil(total * 1.0 / $max_points)) AS BIGINT) = 0 ORDER BY ts"""
    expected = f"""{window}
        SELECT (floor(wind_speed_ms / $width) + 0.5) * $width AS wind_speed_ms,
               avg(expected_power_kw) AS power_kw, count(*) AS records
        FROM recent WHERE expected_power_kw IS NOT NULL GROUP BY 1 ORDER BY 1"""
    reference = f"""WITH {CLOCK}
        SELECT (floor(wind_speed_ms / $width) + 0.5) * $width AS wind_speed_ms,
               avg(power_kw) AS power_kw, count(*) AS records
        FROM scada, clock
        WHERE turbine_id = $turbine_id AND ts > clock.now - INTERVAL '365 days'
          AND wind_speed_ms IS NOT NULL AND power_kw IS NOT NULL
          AND NOT (wind_speed_ms >= 4 AND power_kw <= 0)
        GROUP BY 1 HAVING count(*) >= $min_records ORDER BY 1"""
    residuals = f"""WITH {CLOCK}
        SELECT date_trunc('hour', ts) AS hour, avg(residual_kw) AS residual_kw,
               avg(expected_power_kw) AS expected_power_kw, avg(power_kw) AS power_kw
        FROM predictions, clock
        WHERE turbine_id = $turbine_id AND ts > clock.now - $residual_days * INTERVAL '1 day'
        GROUP BY 1 ORDER BY 1"""
    episodes = f"""WITH {CLOCK}
        SELECT kind, start_ts, coalesce(end_ts, clock.now) AS end_ts, end_ts IS NULL AS open
        FROM alerts, clock
        WHERE turbine_id = $turbine_id
          AND coalesce(end_ts, clock.now) > clock.now - $residual_days * INTERVAL '1 day'
        ORDER BY start_ts"""
    kpi_columns = [("energy_kwh", 1), ("expected_kwh", 1), ("lost_stopped_kwh", 1),
                   ("lost_underperformance_kwh", 1), ("lost_data_gap_kwh", 1), ("other_kwh", 1),
                   ("time_availability", 4), ("energy_availability", 4), ("coverage", 4)]
    kpis = f"""WITH {CLOCK}
        SELECT day, {", ".join(f"{rounded(name, digits)} AS {name}" for name, digits in kpi_columns)}
        FROM kpi_daily, clock
        WHERE turbine_id = $turbine_id AND day > clock.today::DATE - $residual_days::INTEGER
        ORDER BY day DESC"""
    turbine_only = {"turbine_id": turbine_id}
    with_days = {**turbine_only, "residual_days": int(residual_days)}
    return {
        "scatter": WarehouseQuery(
            scatter, {"turbine_id": turbine_id, "days": int(power_curve_days), "max_points": int(max_points)}
        ),
        "expected": WarehouseQuery(expected, parameters),
        "reference": WarehouseQuery(
            reference,
            {"turbine_id": turbine_id, "width": float(bin_width_ms), "min_records": int(min_records_per_bin)},
        ),
        "residuals": WarehouseQuery(residuals, with_days),
        "episodes": WarehouseQuery(episodes, with_days),
        "kpis": WarehouseQuery(kpis, with_days),
    }


def alerts() -> WarehouseQuery:
    """Every alert with its farm, why it opened, the energy it lost and who acknowledged
    it (newest first)."""
    return WarehouseQuery(
        f"""
        WITH {ACKED_ALERTS}
        SELECT turbine_id, kind, start_ts, end_ts,
               CASE WHEN end_ts IS NULL THEN 'open' ELSE 'closed' END AS status,
               {rounded("energy_lost_kwh", 1)} AS energy_lost_kwh,
               {rounded("deficit_at_open", 4)} AS deficit_at_open, channel, acknowledged_by, note,
               {rounded("mean_relative_residual", 4)} AS mean_relative_residual, farm_id,
               CASE WHEN acknowledged_by IS NULL THEN 'no' ELSE 'yes' END AS acknowledged, acknowledged_at
        FROM acked_alerts ORDER BY start_ts DESC, turbine_id, kind""",
        {},
    )


def alert_evidence(turbine_id: str, start_ts: str, end_ts: str | None, max_days: int = 14) -> WarehouseQuery:
    """The records of `turbine_id` from a day before `start_ts` to a day after `end_ts`
    (open: the fleet clock), at most `max_days` after `start_ts`: power, expected, residual."""
    return WarehouseQuery(
        f"""
        WITH {CLOCK}
        SELECT ts, power_kw, expected_power_kw, residual_kw FROM predictions, clock
        WHERE turbine_id = $turbine_id AND ts >= $start_ts::TIMESTAMPTZ - INTERVAL '1 day'
          AND ts <= least(coalesce($end_ts::TIMESTAMPTZ, clock.now) + INTERVAL '1 day',
                          $start_ts::TIMESTAMPTZ + $max_days * INTERVAL '1 day')
        ORDER BY ts""",
        {"turbine_id": turbine_id, "start_ts": start_ts, "end_ts": end_ts, "max_days": int(max_days)},
    )


def losses(farm_id: str, month: str) -> dict[str, WarehouseQuery]:
    """The Losses page of `farm_id`, from the view `kpi_farm_daily` (schema.sql: the farm's
    sums per day, its availabilities recomputed from them): the sums of `month`
    ('YYYY-MM', or LATEST_MONTH: the farm's newest) from expected to produced energy by
    loss category, and its daily time and energy availability over the year up to that
    month."""
    parameters = {"farm_id": farm_id, "month": None if month == LATEST_MONTH else f"{month}-01"}
    chosen = """
        WITH farm AS (SELECT * FROM kpi_farm_daily WHERE farm_id = $farm_id),
        chosen AS (SELECT coalesce($month::DATE, date_trunc('month', max(day))::DATE) AS month FROM farm)"""
    waterfall = f"""{chosen}
        SELECT sum(expected_kwh) AS expected_kwh, sum(lost_stopped_kwh) AS lost_stopped_kwh,
               sum(lost_underperformance_kwh) AS lost_underperformance_kwh,
               sum(lost_data_gap_kwh) AS lost_data_gap_kwh, sum(other_kwh) AS other_kwh,
               sum(energy_kwh) AS energy_kwh
        FROM farm, chosen WHERE day >= chosen.month AND day < chosen.month + INTERVAL '1 month'"""
    availability = f"""{chosen}
        SELECT day, time_availability, energy_availability
        FROM farm, chosen
        WHERE day >= chosen.month - INTERVAL '11 months' AND day < chosen.month + INTERVAL '1 month'
        ORDER BY day"""
    return {
        "waterfall": WarehouseQuery(waterfall, parameters),
        "availability": WarehouseQuery(availability, parameters),
    }
