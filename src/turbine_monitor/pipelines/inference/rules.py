"""Which warehouse rows an inference run reads, a partition of farms at a time. Each rule
is a parameterised query that a catalog dataset runs (`work:` and `query:` in
`conf/base/catalog.yml`): `*_work` lists the farms that have work and how much (the
dataset groups them into partitions), the others read one partition's rows. A run
reads the work it has, not the history: the rows in `scoring_queue` and the few hours
before them; the predictions whose alert episodes can still change and a bounded window
before them. The SQL is standard (NOT EXISTS, LEAST, interval arithmetic, unnest) so
that it runs on PostgreSQL too."""

from __future__ import annotations

from turbine_monitor.detection import EVIDENCE_COLUMNS
from turbine_monitor.values import WarehouseQuery

SCORING_COLUMNS = ["turbine_id", "ts", "power_kw", "wind_speed_ms", "wind_direction_deg", "outdoor_temp_c",
                   "pitch_deg"]
_FARMS = "farm AS (SELECT turbine_id, farm_id FROM turbines WHERE farm_id IN (SELECT unnest($farms)))"


def scoring_work() -> WarehouseQuery:
    """Per farm, how many rows wait in `scoring_queue`."""
    return WarehouseQuery("""
        SELECT t.farm_id, count(*) AS weight
        FROM scoring_queue q JOIN turbines t ON t.turbine_id = q.turbine_id
        GROUP BY t.farm_id ORDER BY t.farm_id""", {})


def rows_to_score(farms: list[str], history_hours: float) -> WarehouseQuery:
    """The `farms`' rows in `scoring_queue` and, before each farm's first of them, the
    `history_hours` of its rows that the model's trailing features read; `scored` says
    which rows are history. With `farm_id`; sorted by turbine and time."""
    columns = ", ".join(f"s.{c}" for c in SCORING_COLUMNS)
    return WarehouseQuery(f"""
        WITH {_FARMS},
        queued AS (SELECT q.turbine_id, q.ts, f.farm_id FROM scoring_queue q JOIN farm f USING (turbine_id)),
        start AS (SELECT farm_id, min(ts) - $history_hours * INTERVAL '1 hour' AS ts
                  FROM queued GROUP BY farm_id)
        SELECT {columns}, f.farm_id, q.turbine_id IS NULL AS scored
        FROM scada s JOIN farm f ON f.turbine_id = s.turbine_id
        JOIN start ON start.farm_id = f.farm_id AND s.ts >= start.ts
        LEFT JOIN queued q ON q.turbine_id = s.turbine_id AND q.ts = s.ts
        ORDER BY s.turbine_id, s.ts""", {"farms": list(farms), "history_hours": history_hours})


def _last_detection() -> str:
    """SQL: per farm of `farm`, how far its last detection read: the newest `scored_at`
    (`scored_through`) and the first timestamp of its earliest stop run still in
    progress (`resume_from`, NULL: none)."""
    return """last_detection AS (
            SELECT f.farm_id, max(d.scored_through) AS scored_through, min(d.resume_from) AS resume_from
            FROM (SELECT DISTINCT farm_id FROM farm) f LEFT JOIN alert_detection d USING (farm_id)
            GROUP BY f.farm_id)"""


def detection_work(window_evidence_records: int) -> WarehouseQuery:
    """Per farm with predictions scored since its last detection, a weight: those
    predictions and, per turbine, the evidence window a run reads before them."""
    return WarehouseQuery(f"""
        WITH farm AS (SELECT turbine_id, farm_id FROM turbines), {_last_detection()},
        turbines_per_farm AS (SELECT farm_id, count(*) AS n FROM farm GROUP BY farm_id)
        SELECT f.farm_id, count(*) + min(n.n) * $window_evidence_records AS weight
        FROM predictions p JOIN farm f USING (turbine_id)
        JOIN last_detection l ON l.farm_id = f.farm_id JOIN turbines_per_farm n ON n.farm_id = f.farm_id
        WHERE p.scored_at > coalesce(l.scored_through, '-infinity'::TIMESTAMPTZ)
        GROUP BY f.farm_id ORDER BY f.farm_id""", {"window_evidence_records": window_evidence_records})


def detection_inputs(farms: list[str], lookback_days: float, baseline_days: int,
                     window_evidence_records: int, window_records: int) -> dict[str, WarehouseQuery]:
    """What a detection run of `farms` reads, in one snapshot, per farm:

    - `farms`: its `recompute_from`, the earliest of: the farm's first prediction scored
      since its last detection, the start of an open alert of the farm, and the start of
      a stop run still in progress at its last detection (not yet confirmed, or not yet
      over); and `scored_through`, the newest `scored_at` read. Episodes starting
      earlier are final.
    - `predictions` (with `farm_id`): the farm's predictions from `recompute_from` on.
    - `turbines`: the farms' turbines (turbine_id, farm_id).
    - `carried`: what earlier runs kept of the evidence records before
      `recompute_from` (`detector_evidence`) that the detector continues from: per
      turbine, the last one, and those `window_records` evidence records back from each
      of its evidence records read (its window sums are differences of running totals;
      there are at most as many as the kept ones from `recompute_from` on and the
      predictions scored since). They are searched back to the day by which every
      turbine of the farm has `window_evidence_records` evidence records
      (`detector_days`), at most `lookback_days`.
    - `known_days`: the detector's day sums the previous runs kept for the farm, from
      `baseline_days` before that window to the day before `recompute_from`'s.
    """
    ctes = f"""WITH {_FARMS}, {_last_detection()},
        open_alerts AS (SELECT f.farm_id, min(a.start_ts) AS start_ts
            FROM alerts a JOIN farm f USING (turbine_id) WHERE a.end_ts IS NULL GROUP BY f.farm_id),
        since AS (
            SELECT f.farm_id, least(min(p.ts), min(o.start_ts), min(l.resume_from)) AS ts,
                   max(p.scored_at) AS scored_through
            FROM predictions p JOIN farm f USING (turbine_id) JOIN last_detection l USING (farm_id)
            LEFT JOIN open_alerts o USING (farm_id)
            WHERE p.scored_at > coalesce(l.scored_through, '-infinity'::TIMESTAMPTZ)
            GROUP BY f.farm_id),
        reach AS (  -- per turbine, the latest day by which it has enough evidence before `since`
            SELECT farm_id, turbine_id, max(day) AS day FROM (
                SELECT f.farm_id, d.turbine_id, d.day, sum(d.evidence) OVER (
                    PARTITION BY d.turbine_id ORDER BY d.day DESC) AS evidence_back
                FROM detector_days d JOIN farm f USING (turbine_id) JOIN since USING (farm_id)
                WHERE d.day < CAST(since.ts AS DATE)
                  AND d.day >= CAST(since.ts - $lookback_days * INTERVAL '1 day' AS DATE)) days
            WHERE evidence_back >= $window_evidence_records GROUP BY farm_id, turbine_id),
        window_start AS (  -- the earliest of those days if every turbine of the farm has one
            SELECT since.farm_id, CASE WHEN count(r.turbine_id) = min(n.turbines)
                THEN greatest(CAST(min(r.day) AS TIMESTAMPTZ), since.ts - $lookback_days * INTERVAL '1 day')
                ELSE since.ts - $lookback_days * INTERVAL '1 day' END AS ts
            FROM since
            JOIN (SELECT farm_id, count(*) AS turbines FROM farm GROUP BY farm_id) n USING (farm_id)
            LEFT JOIN reach r USING (farm_id)
            GROUP BY since.farm_id, since.ts)"""
    arguments = {"farms": list(farms), "lookback_days": lookback_days,
                 "window_evidence_records": window_evidence_records}
    continued = {**arguments, "window_records": window_records}
    farms_since = WarehouseQuery(f"""{ctes}
        SELECT farm_id, ts AS recompute_from, scored_through FROM since ORDER BY farm_id""", arguments)
    predictions = WarehouseQuery(f"""{ctes}
        SELECT p.turbine_id, f.farm_id, p.ts, p.power_kw, p.wind_speed_ms, p.expected_power_kw
        FROM predictions p JOIN farm f USING (turbine_id) JOIN since USING (farm_id)
        WHERE p.ts >= since.ts""", arguments)
    turbines = WarehouseQuery(f"WITH {_FARMS} SELECT turbine_id, farm_id FROM farm", {"farms": list(farms)})
    kept_columns = ", ".join(f"k.{column}" for column in EVIDENCE_COLUMNS)
    carried = WarehouseQuery(f"""{ctes},
        turbine_since AS (  -- per turbine: its farm's `since`, and how far back to search
            SELECT f.turbine_id, since.ts AS since, w.ts AS search_from
            FROM farm f JOIN since USING (farm_id) JOIN window_start w USING (farm_id)),
        kept AS (
            SELECT e.*, t.since FROM detector_evidence e JOIN turbine_since t USING (turbine_id)
            WHERE e.ts >= t.search_from),
        last_kept AS (  -- per turbine, its last kept record before `since`, and how many follow
            SELECT turbine_id, max(ordinal) FILTER (WHERE ts < since) AS ordinal,
                   count(*) FILTER (WHERE ts >= since) AS later
            FROM kept GROUP BY turbine_id),
        scored AS (  -- per turbine, its predictions scored since the farm's last detection
            SELECT p.turbine_id, count(*) AS records
            FROM predictions p JOIN farm f USING (turbine_id) JOIN last_detection l USING (farm_id)
            WHERE p.scored_at > coalesce(l.scored_through, '-infinity'::TIMESTAMPTZ) GROUP BY p.turbine_id)
        SELECT {kept_columns}
        FROM kept k JOIN last_kept l USING (turbine_id) LEFT JOIN scored s USING (turbine_id)
        WHERE k.ts < k.since AND (k.ordinal = l.ordinal OR k.ordinal BETWEEN l.ordinal + 1 - $window_records
                                  AND l.ordinal + l.later + coalesce(s.records, 0) - $window_records)""",
                             continued)
    known_days = WarehouseQuery(f"""{ctes}
        SELECT d.* FROM detector_days d JOIN farm f USING (turbine_id)
        JOIN since USING (farm_id) JOIN window_start w USING (farm_id)
        WHERE d.day < CAST(since.ts AS DATE)
          AND d.day >= CAST(w.ts AS DATE) - CAST($baseline_days AS INTEGER)""",
                                {**arguments, "baseline_days": baseline_days})
    return {"farms": farms_since, "turbines": turbines, "predictions": predictions, "carried": carried,
            "known_days": known_days}
