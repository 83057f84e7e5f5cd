"""Sustained-underperformance and stoppage detection on model residuals.

`detect_alerts` recomputes every alert episode from the predictions history. It is
causal: whether an alert is open at a record depends only on the records up to its
timestamp (trailing windows, baselines of earlier days), so a longer history never
changes earlier episodes, and an episode is identified by (turbine_id, kind, start_ts).
At most one episode per turbine and kind is open. The thresholds and windows are the
`inference.alerts` parameters (conf/base/parameters_inference.yml).

- ``stopped``: the turbine produces nothing (power <= ``stop_max_power_kw``) at
  operating wind while the model expects clear production (>= ``stop_min_expected_kw``).
  An alert once a run holds ``stop_min_records`` such records (low-wind or unscored
  records inside the run neither count nor break it); it starts at the run's first stop
  record and ends at the first of ``stop_resume_records`` producing records in a row.
- ``underperformance`` (running but low). Evidence records: scored, wind >=
  ``min_wind_ms``, expected >= ``min_expected_kw``, producing. Residuals are centred on
  the calibration median of their (turbine, wind bin) and winsorised at ``clip_sigma``
  calibration standard deviations. Over the trailing ``window_records`` evidence
  records, the relative deficit is the weighted least-squares slope of residual on
  expected power (weights expected / std^2). Two channels:

  * *peer*: the turbine's residuals minus the median relative residual of the other
    turbines at the same timestamps. Weather-driven model errors (air density,
    turbulence, a windier year) are common to the farm and cancel, so a single-turbine
    fault stands out with about half the noise.
  * *absolute*: the turbine's own residuals. Catches farm-wide losses (icing, a
    farm-wide derate) that the peer channel cannot see; noisier, so a higher threshold.

  Each channel is compared with the turbine's own trailing baseline (median of the daily
  values over the previous ``baseline_days``, clipped so that a better year than the
  training one is absorbed but a long derate is not). An alert opens when a channel's
  deficit has reached its ``open`` threshold for ``open_persistence_records`` evidence
  records in a row, and closes when both are below their ``close`` thresholds. It
  starts at the record where it opened and ends at the record where it closed.

A run continues from what earlier runs kept per evidence record (``EVIDENCE_COLUMNS``,
final once every turbine's record at that timestamp is in, and judged against the
calibration of the champion of that run): its ordinal among its turbine's evidence
records, the channels' running totals since the turbine's first evidence record and
since its UTC day's first, the open and close persistence counts and whether an alert
was open. A window sum is the difference of two running totals, so a run reads, per
turbine, its last kept record and the ones a window back from its new records: a few
rows, not the window's records or the predictions behind them. An underperformance
alert open at a turbine's last carried record continues the episode an earlier run kept
(``OPEN_EPISODE_COLUMNS``): its start, and its sums through that run's last record.

Energy lost: the shortfall sum(max(expected - power, 0)) / 6 kWh over an episode's
records; for `stopped`, the expected energy of its non-producing records. Records inside
a stop count for the stop only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from turbine_monitor.peers import others_median_and_std

EPISODE_COLUMNS = ["turbine_id", "kind", "start_ts", "end_ts", "energy_lost_kwh", "records",
                   "operating_records", "mean_relative_residual", "deficit_at_open", "channel"]


DAY_COLUMNS = ["turbine_id", "day", "evidence", "matched", "own_num", "own_den", "peer_num", "peer_den"]
_DAY_QUANTITIES = DAY_COLUMNS[2:]
_CHANNELS = ["own_num", "own_den", "peer_num", "peer_den"]  # the terms of the windows' sums
_TOTALS = [f"total_{name}" for name in _CHANNELS]  # since the turbine's first evidence record
_DAY_TOTALS = [f"day_{name}" for name in _DAY_QUANTITIES]  # since the first of its UTC day
_STREAKS = ["open_streak", "calm_streak"]  # evidence records in a row over / below the thresholds
#: What a run continues from, per evidence record.
EVIDENCE_COLUMNS = ["turbine_id", "ts", "ordinal", *_TOTALS, *_DAY_TOTALS, *_STREAKS, "alert_open"]
_KEPT = EVIDENCE_COLUMNS[2:]
_SUMS = ["records", "operating_records", "energy_lost_kwh", "residual_kw_sum", "expected_kw_sum"]
#: What a run continues an open underperformance episode from: its sums through `through_ts`.
OPEN_EPISODE_COLUMNS = ["turbine_id", "kind", "start_ts", "through_ts", *_SUMS, "deficit_at_open", "channel"]


@dataclass(frozen=True)
class Records:
    """The scored records as arrays, sorted by turbine then timestamp; `carried` marks
    the evidence records an earlier run kept (`EVIDENCE_COLUMNS`, in `kept`), which
    have no power, wind or expected power."""

    turbine: np.ndarray        # turbine_id
    farm: np.ndarray           # farm_id (0 when the predictions have none: one farm)
    codes: np.ndarray          # turbine as 0..n_turbines-1
    n_turbines: int
    ts: np.ndarray             # UTC, datetime64[ns] without zone
    power: np.ndarray
    wind: np.ndarray
    expected: np.ndarray
    carried: np.ndarray
    kept: dict[str, np.ndarray]

    @classmethod
    def from_predictions(cls, predictions: pd.DataFrame, carried: pd.DataFrame | None = None) -> Records:
        rows = predictions.assign(carried=False)
        if carried is not None and not carried.empty:
            rows = pd.concat([carried.assign(carried=True), rows], ignore_index=True)
        rows = rows.sort_values(["turbine_id", "ts"], kind="stable")
        turbine = rows["turbine_id"].astype(str).to_numpy()
        codes, names = pd.factorize(turbine)
        ts = pd.to_datetime(rows["ts"], utc=True).dt.tz_localize(None).to_numpy().astype("datetime64[ns]")

        def values(column: str) -> np.ndarray:
            return rows[column].to_numpy(dtype="float64", na_value=np.nan)

        farm = rows["farm_id"].to_numpy() if "farm_id" in rows else np.zeros(len(rows), dtype=int)
        kept = {name: np.nan_to_num(values(name)) if name in rows else np.zeros(len(rows)) for name in _KEPT}
        return cls(turbine, farm, codes, len(names), ts, values("power_kw"), values("wind_speed_ms"),
                   values("expected_power_kw"), rows["carried"].to_numpy(dtype=bool), kept)

    @property
    def first_of_turbine(self) -> np.ndarray:
        return np.r_[True, self.codes[1:] != self.codes[:-1]]


@dataclass(frozen=True)
class Detection:
    """What a detection run found: the alert episodes (`EPISODE_COLUMNS`) and what the
    next run continues from: per turbine and UTC day from `days_from` on, the day's sums
    the baselines are made of (`DAY_COLUMNS`); what each new evidence record leaves
    (`EVIDENCE_COLUMNS`); per turbine whose last record is inside
    a stop run (confirmed or not), the run's first timestamp (`stop_runs`: turbine_id,
    start_ts), where the next run must reach back to; the underperformance episodes
    still open at the turbine's last record, with their sums (`OPEN_EPISODE_COLUMNS`)."""

    episodes: pd.DataFrame
    days: pd.DataFrame
    evidence: pd.DataFrame
    stop_runs: pd.DataFrame
    open_episodes: pd.DataFrame


def detect_alerts(predictions: pd.DataFrame, calibration: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Alert episodes from the predictions of all turbines, one row per episode:
    turbine_id, kind ('underperformance' | 'stopped'), start_ts, end_ts (NaT while open),
    energy_lost_kwh, records (rows in the episode), operating_records (its evidence or
    stop records), mean_relative_residual (sum residual / sum expected over those),
    deficit_at_open and channel ('peer' | 'absolute' | 'both') for underperformance."""
    return detect(predictions, calibration, params).episodes


def detect(predictions: pd.DataFrame, calibration: pd.DataFrame, params: dict,
           known_days: pd.DataFrame | None = None, days_from: pd.Series | None = None,
           carried: pd.DataFrame | None = None, open_episodes: pd.DataFrame | None = None) -> Detection:
    """`detect_alerts`, continuing from what earlier runs kept: the day sums
    (`known_days`, `DAY_COLUMNS`) stand for the days before each turbine's `days_from`
    (a Series by turbine id), and the kept evidence records (`carried`,
    `EVIDENCE_COLUMNS`) for those before `predictions`: each turbine's last one and
    those a window back from its new ones. An underperformance alert open at a
    turbine's last carried record continues its open episode (`open_episodes`,
    `OPEN_EPISODE_COLUMNS`, through the record before `predictions`): its start and
    sums. Turbines of several farms may be detected at once (`farm_id` column): peers
    are the other turbines of the same farm."""
    if predictions.empty:
        return Detection(pd.DataFrame(columns=EPISODE_COLUMNS), pd.DataFrame(columns=DAY_COLUMNS),
                         pd.DataFrame(columns=EVIDENCE_COLUMNS),
                         pd.DataFrame(columns=["turbine_id", "start_ts"]),
                         pd.DataFrame(columns=OPEN_EPISODE_COLUMNS))
    rec = Records.from_predictions(predictions, carried)
    producing = rec.carried | (rec.power > params["stop_max_power_kw"])
    stop_record = ((rec.wind >= params["min_wind_ms"]) & (rec.expected >= params["stop_min_expected_kw"])
                   & ~producing)
    stops, stop_runs = _stop_episodes(rec, stop_record, producing, params)
    evidence = rec.carried | ((rec.wind >= params["min_wind_ms"])
                              & (rec.expected >= params["min_expected_kw"])
                              & producing & np.isfinite(rec.power - rec.expected))
    days = _DaySums(rec, known_days, days_from)
    under_state, deficit, channel, kept = _underperformance_state(rec, evidence, calibration, params, days)
    under = _episodes(rec, under_state, "underperformance")
    shortfall = np.nan_to_num(np.maximum(rec.expected - rec.power, 0.0))
    lost_stopped = np.where(producing, shortfall, np.nan_to_num(np.maximum(rec.expected, 0.0))) / 6.0
    lost_under = np.where(_inside(stops, len(shortfall)), 0.0, shortfall) / 6.0
    under = _continue_open(_summarise(rec, under, lost_under, evidence & ~rec.carried).assign(
        deficit_at_open=deficit[under["_first"]], channel=channel[under["_first"]]),
        rec.carried[under["_first"]], open_episodes)
    summaries = [under, _summarise(rec, stops, lost_stopped, stop_record).assign(deficit_at_open=np.nan,
                                                                                   channel=None)]
    episodes = pd.concat([s for s in summaries if not s.empty] or summaries[:1], ignore_index=True)
    for column in ("start_ts", "end_ts"):
        episodes[column] = pd.to_datetime(episodes[column]).dt.tz_localize("UTC")
    episodes = episodes.sort_values(["turbine_id", "kind", "start_ts"]).reset_index(drop=True)
    still_open = episodes[(episodes["kind"] == "underperformance") & episodes["end_ts"].isna()]
    open_now = still_open.assign(through_ts=_utc(rec.ts[still_open["_last"].to_numpy(dtype=np.int64)]))
    return Detection(episodes[EPISODE_COLUMNS], days.table(), kept, stop_runs,
                     open_now[OPEN_EPISODE_COLUMNS].reset_index(drop=True))


def _utc(ts: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ts).tz_localize("UTC")


def _stop_episodes(rec: Records, stop_record: np.ndarray, producing: np.ndarray,
                   params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stop runs: from a stop record until `stop_resume_records` producing records in a
    row; an episode once the run holds `stop_min_records` stop records, back-dated to
    its first one, ending at the first of the producing records. Also, per turbine whose
    last record is inside a run, the run's first timestamp."""
    resume = int(params["stop_resume_records"])
    resumed = _persistent(producing, rec.codes, resume)
    in_run = _hold(np.where(stop_record, 1.0, np.where(resumed, 0.0, np.nan)), rec.codes)
    starts = (in_run == 1) & ((np.r_[0, in_run[:-1]] == 0) | rec.first_of_turbine)
    last_of_turbine = np.r_[rec.first_of_turbine[1:], True]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(len(starts)), 0))
    unfinished = last_of_turbine & (in_run == 1)
    stop_runs = pd.DataFrame({"turbine_id": rec.turbine[unfinished],
                              "start_ts": _utc(rec.ts[run_start[unfinished]])})
    run = np.where(in_run == 1, np.cumsum(starts), 0)
    stops_in_run = pd.Series(stop_record.astype(np.int64)).groupby(run).transform("sum").to_numpy()
    state = ((run > 0) & (stops_in_run >= params["stop_min_records"])).astype(np.int8)
    episodes = _episodes(rec, state, "stopped")
    closed = episodes["end_ts"].notna().to_numpy()
    if resume > 1 and closed.any():  # the run's last resume-1 rows already produce
        last = np.where(closed, episodes["_last"] - (resume - 1), episodes["_last"])
        episodes["_last"] = last
        after = rec.ts[np.minimum(last + 1, len(rec.ts) - 1)]
        episodes["end_ts"] = np.where(closed, after, episodes["end_ts"])
    return episodes, stop_runs


def _underperformance_state(
        rec: Records, evidence: np.ndarray, calibration: pd.DataFrame, params: dict, days: _DaySums,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Per record: 1 while an underperformance alert is open, and at the new evidence
    records the larger channel deficit and the channel(s) over their open threshold;
    per new evidence record, what the next run continues from (`EVIDENCE_COLUMNS`)."""
    centre, std = _calibration_lookup(calibration, rec)
    std = np.where(np.isfinite(std) & (std > 0), std, np.maximum(0.05 * np.abs(rec.expected), 1.0))
    residual = np.clip(rec.power - rec.expected - centre, -params["clip_sigma"] * std,
                       params["clip_sigma"] * std)
    weight = rec.expected / std ** 2
    new = evidence & ~rec.carried
    peer = _peer_relative_residual(rec, evidence, residual)
    matched = new & np.isfinite(peer)
    terms = {"evidence": new.astype(float), "matched": matched.astype(float),
             "own_num": np.where(new, weight * residual, 0.0),
             "own_den": np.where(new, weight * rec.expected, 0.0),
             "peer_num": np.where(matched, weight * (residual - np.nan_to_num(peer) * rec.expected), 0.0),
             "peer_den": np.where(matched, weight * rec.expected, 0.0)}
    chain = _EvidenceChain(rec, evidence)
    totals = {name: chain.running(terms[name], f"total_{name}", chain.codes) for name in _CHANNELS}
    day_of_chain = chain.codes.astype(np.int64) * 2 ** 32 + days.day[chain.at]
    day_totals = {name: chain.running(terms[name], f"day_{name}", day_of_chain) for name in _DAY_QUANTITIES}
    window, full = chain.window(totals, int(params["window_records"]))
    own = window["own_num"] / window["own_den"]
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(window["peer_den"] >= params["peer_min_coverage"] * window["own_den"],
                            window["peer_num"] / window["peer_den"], np.nan)

    days.add({name: np.where(chain.last_carried, rec.kept[f"day_{name}"], terms[name])
              for name in _DAY_QUANTITIES})
    own_base, peer_base = days.baselines(params, days.day[chain.new_at], rec.codes[chain.new_at])
    own_base = np.clip(own_base, params["baseline_floor"], params["baseline_cap"])
    peer_base = np.clip(peer_base, params["peer_baseline_floor"], params["peer_baseline_cap"])
    abs_deficit, peer_deficit = own_base - own, peer_base - relative
    with np.errstate(invalid="ignore"):
        peer_open = full & (peer_deficit >= params["peer_open_deficit"])
        abs_open = full & (abs_deficit >= params["abs_open_deficit"])
        calm = full & ~(peer_deficit >= params["peer_close_deficit"]) & (
            abs_deficit < params["abs_close_deficit"])
    open_streak = chain.streak(peer_open | abs_open, "open_streak")
    calm_streak = chain.streak(calm, "calm_streak")
    signal = np.where(chain.last_carried, rec.kept["alert_open"], np.nan)  # the state to continue
    signal[chain.new_at] = np.where(open_streak >= params["open_persistence_records"], 1.0,
                                    np.where(calm_streak >= params["close_persistence_records"], 0.0, np.nan))
    state = _hold(signal, rec.codes)
    deficit = np.full(len(rec.ts), np.nan)
    deficit[chain.new_at] = np.fmax(peer_deficit, abs_deficit)
    channel = np.full(len(rec.ts), None, dtype=object)
    channel[chain.new_at] = np.where(peer_open & abs_open, "both", np.where(peer_open, "peer", "absolute"))
    kept = pd.DataFrame({"turbine_id": rec.turbine[chain.new_at], "ts": _utc(rec.ts[chain.new_at]),
                         "ordinal": chain.ordinal,
                         **{f"total_{name}": totals[name] for name in _CHANNELS},
                         **{f"day_{name}": day_totals[name] for name in _DAY_QUANTITIES},
                         "open_streak": open_streak, "calm_streak": calm_streak,
                         "alert_open": state[chain.new_at].astype(bool)})
    return state, deficit, channel, kept


class _EvidenceChain:
    """The evidence records of each turbine in order: the carried ones (an earlier
    run's: its last one, and those a window back from the new ones), then the new ones,
    which continue the last carried one's ordinal, running totals and streaks. The
    chain is each turbine's last carried record followed by its new ones."""

    def __init__(self, rec: Records, evidence: np.ndarray):
        self._rec = rec
        self._every = np.flatnonzero(evidence)  # by turbine, then time: carried before new
        self._carried = rec.carried[self._every]
        codes = rec.codes[self._every]
        last = self._carried & ~np.r_[self._carried[1:] & (codes[1:] == codes[:-1]), False]
        self.last_carried = np.zeros(len(rec.ts), bool)  # per record
        self.last_carried[self._every[last]] = True
        chained = last | ~self._carried
        self.at = self._every[chained]
        self.codes = codes[chained]
        self.new_at = self._every[~self._carried]
        self._continues = last[chained]  # the chain member is a carried record
        self._first = _group_start(self.codes)
        base = np.where(self._continues, rec.kept["ordinal"][self.at], 0)[self._first]
        self.ordinal = (np.arange(len(self.at)) - self._first + base).astype(np.int64)[~self._continues]
        every_ordinal = rec.kept["ordinal"][self._every].astype(np.int64)
        every_ordinal[~self._carried] = self.ordinal
        self._key = codes.astype(np.int64) * 2 ** 40 + every_ordinal  # sorted

    def running(self, values: np.ndarray, kept: str, group: np.ndarray) -> np.ndarray:
        """For the new records, the running total of `values` (per record) within
        `group` (per chain member), continuing the carried record's `kept` total."""
        chained = np.where(self._continues, self._rec.kept[kept][self.at], values[self.at])
        return pd.Series(chained).groupby(group, sort=False).cumsum().to_numpy()[~self._continues]

    def streak(self, condition: np.ndarray, kept: str) -> np.ndarray:
        """For the new records (`condition` per new record), how many evidence records
        in a row the condition has held, continuing the carried record's `kept` count."""
        counted = self._rec.kept[kept][self.at].astype(np.int64)
        holds = np.where(self._continues, counted > 0, False)
        holds[~self._continues] = condition
        run_from = _run_start(holds, self._first)
        length = np.where(holds, np.arange(len(self.at)) - run_from + 1, 0)
        run_start = np.minimum(run_from, len(self.at) - 1)  # past the end where the condition fails
        continued = holds & self._continues[run_start]
        return np.where(continued, length - 1 + counted[run_start], length)[~self._continues]

    def window(self, totals: dict[str, np.ndarray], size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """For the new records, each channel's sum over the turbine's trailing `size`
        evidence records (a difference of running totals), and whether a whole window
        is behind them (and was read)."""
        below = self.ordinal - size
        target = self.codes[~self._continues].astype(np.int64) * 2 ** 40 + below
        at = np.minimum(np.searchsorted(self._key, target), len(self._key) - 1)
        found = (below >= 0) & (self._key[at] == target)
        full = (below >= -1) & (found | (below < 0))
        sums = {}
        for name, new_totals in totals.items():
            every_totals = self._rec.kept[f"total_{name}"][self._every]
            every_totals[~self._carried] = new_totals
            sums[name] = new_totals - np.where(below < 0, 0.0, np.where(found, every_totals[at], np.nan))
        return sums, full


def _group_start(codes: np.ndarray) -> np.ndarray:
    """Per element of `codes` (grouped), the index of its group's first element."""
    k = np.arange(len(codes))
    return np.maximum.accumulate(np.where(np.r_[True, codes[1:] != codes[:-1]], k, 0))


def _peer_relative_residual(rec: Records, evidence: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Per record, the median relative residual of the other turbines of its farm that
    are evidence at the same timestamp (NaN when none is). NaN for the carried records:
    their state was kept (a farm's records at a timestamp are all carried or none)."""
    fresh = np.flatnonzero(~rec.carried)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(evidence[fresh], residual[fresh] / rec.expected[fresh], np.nan)
    peer = np.full(len(rec.ts), np.nan)
    peer[fresh] = others_median_and_std(relative, rec.farm[fresh], rec.ts[fresh], rec.turbine[fresh])[0]
    return peer


class _DaySums:
    """Per UTC day and turbine, the sums the baselines are made of (`DAY_COLUMNS`): from
    the records, except the days before `days_from`, which come from `known` (what a
    previous run kept) where it has them; the days may start before the records do."""

    def __init__(self, rec: Records, known: pd.DataFrame | None, days_from: pd.Series | None):
        self.names = pd.Index(rec.turbine[rec.first_of_turbine])  # names[code]
        day_of = rec.ts.astype("datetime64[D]")
        known = known if known is not None else pd.DataFrame(columns=DAY_COLUMNS)
        self.known = known[known["turbine_id"].isin(self.names)]
        known_days = pd.to_datetime(self.known["day"]).to_numpy().astype("datetime64[D]")
        self.first = min(day_of.min(), known_days.min()) if len(known_days) else day_of.min()
        self.day = (day_of - self.first).astype(np.int64)  # of each record
        self.n_days = int(max(self.day.max(), (known_days - self.first).astype(np.int64).max()
                              if len(known_days) else 0)) + 1
        if days_from is None:  # every day from the records
            self.days_from = np.zeros(len(self.names), dtype=np.int64)
        else:  # per turbine (code), the first day the records stand for
            start = pd.to_datetime(days_from.reindex(self.names), utc=True).dt.tz_localize(None)
            self.days_from = (start.to_numpy().astype("datetime64[D]") - self.first).astype(np.int64)
        self.codes = rec.codes
        self.sums: dict[str, np.ndarray] = {}

    def add(self, per_record: dict[str, np.ndarray]) -> None:
        """Sum each quantity per day and turbine (`per_record`: a carried record gives its
        day's totals up to it), then take the known days."""
        known_days = pd.to_datetime(self.known["day"]).to_numpy().astype("datetime64[D]")
        known_day = (known_days - self.first).astype(np.int64)
        known_code = self.names.get_indexer(self.known["turbine_id"])
        keep = known_day < self.days_from[known_code]
        at = (known_day[keep], known_code[keep])
        cell = self.day * len(self.names) + self.codes  # bincount: np.add.at's sums, 10x faster
        for name in _DAY_QUANTITIES:
            sums = np.bincount(cell, weights=per_record[name].astype(float),
                               minlength=self.n_days * len(self.names)).reshape(self.n_days, len(self.names))
            sums[at] = self.known[name].to_numpy(dtype="float64")[keep]
            self.sums[name] = sums

    def baselines(self, params: dict, day: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """At each (`day`, turbine `code`), the trailing baselines of the own and peer
        relative deficits: the median daily value over the `baseline_days` ending
        `baseline_gap_days` before the day (valid days only), 0 with fewer than
        `baseline_min_days` valid days."""
        needed, which = np.unique(day, return_inverse=True)
        last = needed - 1 - int(params["baseline_gap_days"])
        days = last[:, None] - np.arange(int(params["baseline_days"]))[None, ::-1]  # each needed day's window

        def baseline(counted: str, num: str, den: str) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                values = np.where(self.sums[counted] >= params["baseline_min_day_records"],
                                  self.sums[num] / self.sums[den], np.nan)
            windows = np.where((days >= 0)[:, :, None], values[np.maximum(days, 0)], np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a window without a valid day
                median = np.nanmedian(windows, axis=1)
            enough = np.isfinite(windows).sum(axis=1) >= params["baseline_min_days"]
            return np.where(enough, median, 0.0)[which, code]

        return baseline("evidence", "own_num", "own_den"), baseline("matched", "peer_num", "peer_den")

    def table(self) -> pd.DataFrame:
        """The day sums from each turbine's `days_from` on, for the days it has records."""
        with_records = np.zeros((self.n_days, len(self.names)), bool)
        with_records[self.day, self.codes] = True
        with_records &= np.arange(self.n_days)[:, None] >= self.days_from[None, :]
        day, code = np.nonzero(with_records)
        return pd.DataFrame({"turbine_id": self.names[code],
                             "day": (self.first + day.astype("timedelta64[D]")).astype("datetime64[s]"),
                             **{name: self.sums[name][day, code] for name in _DAY_QUANTITIES}})[DAY_COLUMNS]


def _calibration_lookup(calibration: pd.DataFrame, rec: Records) -> tuple[np.ndarray, np.ndarray]:
    """Per record, the calibration residual median and std of its (turbine, wind bin);
    median 0 and std NaN where there is none. Wind above the top bin uses the top bin."""
    if calibration is None or calibration.empty:
        return np.zeros(len(rec.ts)), np.full(len(rec.ts), np.nan)
    bins = np.sort(calibration["wind_bin_ms"].unique())
    width = float(np.diff(bins).min()) if len(bins) > 1 else 1.0
    table = calibration.assign(bin=np.round(calibration["wind_bin_ms"] / width).astype(int))
    names = pd.Index(rec.turbine[rec.first_of_turbine])  # names[code]
    table = table[table["turbine_id"].isin(names)]
    median = np.zeros((rec.n_turbines, table["bin"].max() + 1 if len(table) else 1))
    std = np.full_like(median, np.nan)
    top = np.zeros(rec.n_turbines, dtype=int)
    code = names.get_indexer(table["turbine_id"])
    median[code, table["bin"]] = table["q0.5"].fillna(0.0)
    std[code, table["bin"]] = table["std_kw"]
    np.maximum.at(top, code, table["bin"].to_numpy())
    wind_bin = np.minimum(np.floor(np.nan_to_num(rec.wind) / width).astype(int), top[rec.codes])
    return median[rec.codes, wind_bin], std[rec.codes, wind_bin]


def _episodes(rec: Records, state: np.ndarray, kind: str) -> pd.DataFrame:
    """Episodes of a 0/1 state per record: rows `_first`.. `_last`, end_ts the timestamp
    of the record after `_last` (NaT when the episode is open at the turbine's last)."""
    last_of_turbine = np.r_[rec.first_of_turbine[1:], True]
    previous = np.where(rec.first_of_turbine, 0, np.r_[0, state[:-1]])
    following = np.where(last_of_turbine, 0, np.r_[state[1:], 0])
    first = np.flatnonzero((state == 1) & (previous == 0))
    last = np.flatnonzero((state == 1) & (following == 0))
    closed = ~last_of_turbine[last]
    end_ts = np.where(closed, rec.ts[np.minimum(last + 1, len(state) - 1)], np.datetime64("NaT", "ns"))
    return pd.DataFrame({"turbine_id": rec.turbine[first], "kind": kind, "start_ts": rec.ts[first],
                         "end_ts": end_ts, "_first": first, "_last": last})


def _summarise(rec: Records, episodes: pd.DataFrame, lost_kwh: np.ndarray,
               counted: np.ndarray) -> pd.DataFrame:
    """Energy lost, record counts and mean relative residual of each episode, over its
    records read (not the carried ones), with the sums the mean is made of."""
    first, last = episodes["_first"].to_numpy(), episodes["_last"].to_numpy()

    def total(values: np.ndarray) -> np.ndarray:
        cumulative = np.r_[0.0, np.cumsum(values)]
        return cumulative[last + 1] - cumulative[first]

    sums = episodes.assign(
        records=total((~rec.carried).astype(float)).astype(np.int64),
        operating_records=total(counted.astype(float)).astype(np.int64), energy_lost_kwh=total(lost_kwh),
        residual_kw_sum=total(np.where(counted, np.nan_to_num(rec.power - rec.expected), 0.0)),
        expected_kw_sum=total(np.where(counted, np.nan_to_num(rec.expected), 0.0)))
    return _with_mean(sums)


def _with_mean(sums: pd.DataFrame) -> pd.DataFrame:
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums.assign(mean_relative_residual=sums["residual_kw_sum"] / sums["expected_kw_sum"])


def _continue_open(under: pd.DataFrame, continued: np.ndarray, open_episodes: pd.DataFrame | None,
                   ) -> pd.DataFrame:
    """The underperformance episodes, those that begin at a carried record (an alert open
    before the records read) continuing their turbine's kept open episode: its start,
    the deficit and channel it opened on, and its sums added. One with no kept episode
    is left out: it is a stored episode that ended after the records read began (the
    run reached back to every open one it could not continue), final."""
    if not continued.any():
        return under
    kept = (open_episodes if open_episodes is not None else pd.DataFrame(columns=OPEN_EPISODE_COLUMNS)
            ).set_index("turbine_id").reindex(under["turbine_id"])
    has_kept = kept["start_ts"].notna().to_numpy()
    under = under[~continued | has_kept].astype({"deficit_at_open": "float64", "channel": "object"})
    rows, kept = under.index[continued[~continued | has_kept]], kept[continued & has_kept]
    under.loc[rows, "start_ts"] = pd.to_datetime(kept["start_ts"], utc=True).dt.tz_localize(None).to_numpy()
    under.loc[rows, ["deficit_at_open", "channel"]] = kept[["deficit_at_open", "channel"]].to_numpy()
    for name in _SUMS:
        under.loc[rows, name] += kept[name].to_numpy(dtype=under[name].dtype)
    return _with_mean(under)


def _inside(episodes: pd.DataFrame, n: int) -> np.ndarray:
    """True for the records inside any of `episodes`."""
    marks = np.zeros(n + 1)
    np.add.at(marks, episodes["_first"].to_numpy(), 1)
    np.add.at(marks, episodes["_last"].to_numpy() + 1, -1)
    return np.cumsum(marks)[:n] > 0


def _hold(signal: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """State per record from a 1 / 0 / NaN signal, NaN keeping the turbine's previous state."""
    return pd.Series(signal).groupby(codes).ffill().fillna(0.0).to_numpy().astype(np.int8)


def _persistent(condition: np.ndarray, codes: np.ndarray, records: int) -> np.ndarray:
    """True where `condition` has held for the turbine's last `records` records."""
    if records <= 1:
        return condition
    run_from = _run_start(condition, _group_start(codes))
    return condition & (np.arange(len(condition)) - run_from + 1 >= records)


def _run_start(condition: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Per element, where the run of `condition` it ends began within its group (the
    element after it where the condition fails)."""
    k = np.arange(len(condition))
    return np.maximum(np.maximum.accumulate(np.where(condition, -1, k)) + 1, group_start)
