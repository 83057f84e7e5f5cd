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


def detection_inputs(farms: list[str], baseline_days: int, baseline_gap_days: int,
                     window_records: int) -> dict[str, WarehouseQuery]:
    """What a detection run of `farms` reads, in one snapshot, per farm:

    - `farms`: its `recompute_from`, the earliest of: the farm's first prediction scored
      since its last detection, the start of a stop run still in progress at its last
      detection (not yet confirmed, or not yet over), and the start of each open alert
      of the farm that the run does not continue: a stop, an underperformance alert
      without a kept episode (`detector_episodes`), and, unless every kept episode of
      the farm was read through a record before the other points, every open alert;
      and `scored_through`, the newest `scored_at` read. Episodes starting earlier are
      final, but for the open ones continued.
    - `predictions` (with `farm_id`): the farm's predictions from `recompute_from` on.
    - `turbines`: the farms' turbines (turbine_id, farm_id).
    - `carried`: what earlier runs kept of the evidence records before
      `recompute_from` (`detector_evidence`) that the detector continues from: per
      turbine, the last one, and those `window_records` evidence records back from each
      of its evidence records read (its window sums are differences of running totals;
      there are at most as many as the kept ones from `recompute_from` on and the
      predictions scored since). The table holds a bounded number per turbine (the
      alerts dataset trims it), so this reads no history.
    - `known_days`: the detector's day sums the previous runs kept for the farm, for the
      `baseline_days` + `baseline_gap_days` days before `recompute_from`'s day (the
      baselines of the days from there on).
    - `open_episodes`: the farm's kept open underperformance episodes read through a
      record before `recompute_from`, which the run continues.
    """
    ctes = f"""WITH {_FARMS}, {_last_detection()},
        new AS (
            SELECT f.farm_id, min(p.ts) AS first_new, max(p.scored_at) AS scored_through,
                   min(l.resume_from) AS resume_from
            FROM predictions p JOIN farm f USING (turbine_id) JOIN last_detection l USING (farm_id)
            WHERE p.scored_at > coalesce(l.scored_through, '-infinity'::TIMESTAMPTZ)
            GROUP BY f.farm_id),
        open_alerts AS (  -- with how far its kept episode was read (NULL: none kept)
            SELECT f.farm_id, a.start_ts, k.through_ts
            FROM alerts a JOIN farm f USING (turbine_id)
            LEFT JOIN detector_episodes k USING (turbine_id, kind, start_ts) WHERE a.end_ts IS NULL),
        held AS (  -- what must be recomputed anyway, and how far the kept episodes were read
            SELECT n.farm_id, max(o.through_ts) AS through_ts, min(o.start_ts) AS open_from,
                   least(n.first_new, n.resume_from,
                         min(o.start_ts) FILTER (WHERE o.through_ts IS NULL)) AS ts
            FROM new n LEFT JOIN open_alerts o USING (farm_id)
            GROUP BY n.farm_id, n.first_new, n.resume_from),
        since AS (  -- the kept episodes continue if all were read through records before it
            SELECT farm_id, CASE WHEN h.through_ts >= h.ts THEN least(h.ts, h.open_from) ELSE h.ts END AS ts,
                   n.scored_through
            FROM held h JOIN new n USING (farm_id))"""
    arguments = {"farms": list(farms)}
    farms_since = WarehouseQuery(f"""{ctes}
        SELECT farm_id, ts AS recompute_from, scored_through FROM since ORDER BY farm_id""", arguments)
    predictions = WarehouseQuery(f"""{ctes}
        SELECT p.turbine_id, f.farm_id, p.ts, p.power_kw, p.wind_speed_ms, p.expected_power_kw
        FROM predictions p JOIN farm f USING (turbine_id) JOIN since USING (farm_id)
        WHERE p.ts >= since.ts""", arguments)
    turbines = WarehouseQuery(f"WITH {_FARMS} SELECT turbine_id, farm_id FROM farm", arguments)
    kept_columns = ", ".join(f"k.{column}" for column in EVIDENCE_COLUMNS)
    carried = WarehouseQuery(f"""{ctes},
        last_kept AS (  -- per turbine, its last kept record before `since`, and how many follow
            SELECT e.turbine_id, max(e.ordinal) FILTER (WHERE e.ts < since.ts) AS ordinal,
                   count(*) FILTER (WHERE e.ts >= since.ts) AS later
            FROM detector_evidence e JOIN farm f USING (turbine_id) JOIN since USING (farm_id)
            GROUP BY e.turbine_id),
        scored AS (  -- per turbine, its predictions scored since the farm's last detection
            SELECT p.turbine_id, count(*) AS records
            FROM predictions p JOIN farm f USING (turbine_id) JOIN last_detection l USING (farm_id)
            WHERE p.scored_at > coalesce(l.scored_through, '-infinity'::TIMESTAMPTZ) GROUP BY p.turbine_id),
        wanted AS (  -- the last one, and the window starts of the records from `since` on
            SELECT l.turbine_id, l.ordinal AS last, l.ordinal + 1 - $window_records AS first_start,
                   least(l.ordinal, l.ordinal + l.later + coalesce(s.records, 0) - $window_records)
                   AS last_start
            FROM last_kept l LEFT JOIN scored s USING (turbine_id))
        SELECT {kept_columns}
        FROM detector_evidence k JOIN wanted w USING (turbine_id)
        WHERE k.ordinal = w.last OR k.ordinal BETWEEN w.first_start AND w.last_start""",
                             {**arguments, "window_records": window_records})
    known_days = WarehouseQuery(f"""{ctes}
        SELECT d.* FROM detector_days d JOIN farm f USING (turbine_id) JOIN since USING (farm_id)
        WHERE d.day < CAST(since.ts AS DATE)
          AND d.day >= CAST(since.ts AS DATE) - CAST($days AS INTEGER)""",
                                {**arguments, "days": baseline_days + baseline_gap_days})
    open_episodes = WarehouseQuery(f"""{ctes}
        SELECT k.* FROM detector_episodes k JOIN farm f USING (turbine_id) JOIN since USING (farm_id)
        WHERE k.through_ts < since.ts""", arguments)
    return {"farms": farms_since, "turbines": turbines, "predictions": predictions, "carried": carried,
            "known_days": known_days, "open_episodes": open_episodes}
