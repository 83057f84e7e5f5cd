"""Which warehouse rows training reads: a farm's history, and each farm's newest record
(for the retraining gate of a training round). Parameterised queries that catalog
datasets run (`query:` in `conf/base/catalog.yml`)."""

from __future__ import annotations

from turbine_monitor.values import WarehouseQuery

HISTORY_COLUMNS = ["turbine_id", "ts", "power_kw", "wind_speed_ms", "wind_direction_deg", "outdoor_temp_c",
                   "pitch_deg"]


def farms_with_data() -> WarehouseQuery:
    """Per farm with rows in `scada`, how many."""
    return WarehouseQuery("""
        SELECT t.farm_id, count(*) AS weight FROM scada s JOIN turbines t USING (turbine_id)
        GROUP BY t.farm_id ORDER BY t.farm_id""", {})


def farm_history(farms: list[str], window_days: float) -> WarehouseQuery:
    """The `farms`' rows of the `window_days` before each farm's newest record, sorted
    by turbine and time."""
    columns = ", ".join(f"s.{c}" for c in HISTORY_COLUMNS)
    return WarehouseQuery(f"""
        WITH farm AS (SELECT turbine_id, farm_id FROM turbines WHERE farm_id IN (SELECT unnest($farms))),
        newest AS (SELECT f.farm_id, max(s.ts) AS ts FROM scada s JOIN farm f USING (turbine_id)
                   GROUP BY f.farm_id)
        SELECT {columns} FROM scada s JOIN farm f USING (turbine_id) JOIN newest n USING (farm_id)
        WHERE s.ts > n.ts - $window_days * INTERVAL '1 day'
        ORDER BY s.turbine_id, s.ts""", {"farms": list(farms), "window_days": window_days})


def newest_records() -> WarehouseQuery:
    """Each farm's newest record in `scada` (`farm_id`, `newest_ts`)."""
    return WarehouseQuery("""
        SELECT t.farm_id, max(s.ts) AS newest_ts FROM scada s JOIN turbines t USING (turbine_id)
        GROUP BY t.farm_id ORDER BY t.farm_id""", {})
