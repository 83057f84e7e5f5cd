"""The reporting pipeline in the project: registered on its own and run by inference after
alert detection; and on the real data (La Haute Borne 2014 ingested, a fast champion
trained, everything scored by `kedro run`): every KPI row adds up, is within its
bounds, and the roll-up views recompute their ratios from the sums."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import FAST_TRAINING
from turbine_monitor.pipeline_registry import register_pipelines
from turbine_monitor.sandbox import Sandbox

LOSSES = ["lost_stopped_kwh", "lost_underperformance_kwh", "lost_data_gap_kwh"]


def test_reporting_is_a_pipeline_that_inference_and_the_default_run_after_alert_detection():
    pipelines = register_pipelines()
    assert [n.name for n in pipelines["reporting"].nodes] == ["report_days"]
    for name in ("inference", "__default__"):
        order = [n.name for n in pipelines[name].nodes]  # topologically sorted
        assert order.index("update_alerts") < order.index("report_days"), name


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[Sandbox, pd.DataFrame]:
    """`kedro run` on the bundled 2014 history, and its kpi_daily."""
    sandbox = Sandbox.create(tmp_path_factory.mktemp("real"))
    sandbox.run("__default__", runtime_params=FAST_TRAINING)
    columns = [c for (c,) in sandbox.sql("SELECT column_name FROM (DESCRIBE kpi_daily)")]
    kpis = sandbox.sql("SELECT * FROM kpi_daily ORDER BY turbine_id, day")
    return sandbox, pd.DataFrame(kpis, columns=columns)


def test_energy_losses_and_other_add_up_to_expected_on_every_real_day(real):
    _, kpis = real
    parts = kpis["energy_kwh"] + kpis[LOSSES].sum(axis=1) + kpis["other_kwh"]
    assert (parts - kpis["expected_kwh"]).abs().max() < 1e-6
    assert kpis["lost_stopped_kwh"].sum() > 0 and kpis["lost_data_gap_kwh"].sum() > 0


def test_every_turbine_has_a_row_for_every_day_of_its_farm(real):
    sandbox, kpis = real
    turbines = sandbox.scalar("SELECT count(*) FROM turbines")
    assert len(kpis) == turbines * 365
    spans = kpis.groupby("turbine_id")["day"].agg(["min", "max", "count"]).drop_duplicates()
    first, last = pd.Timestamp("2014-01-01").date(), pd.Timestamp("2014-12-31").date()
    assert spans.values.tolist() == [[first, last, 365]]
    assert (kpis["stamps"] == 144).all()  # the history ends at 2014-12-31 23:50
    assert sandbox.sql("SELECT report_from FROM alert_detection") == [(None,)]


def test_kpi_columns_are_non_negative_and_ratios_within_bounds_on_real_days(real):
    _, kpis = real
    assert (kpis[[*LOSSES, "expected_kwh", "stamps", "valid_stamps", "coverage"]] >= 0).all().all()
    assert (kpis["valid_stamps"] <= kpis["stamps"]).all() and (kpis["coverage"] <= 1).all()
    assert kpis["time_availability"].dropna().between(0, 1).all()
    assert kpis["energy_availability"].dropna().between(0, 1).all()
    assert kpis["time_availability"].isna().equals(kpis["valid_stamps"] == 0)


def test_roll_up_views_sum_the_days_and_recompute_their_ratios_from_the_sums(real):
    sandbox, kpis = real
    monthly = sandbox.sql("""SELECT turbine_id, month, days, energy_kwh, lost_stopped_kwh, time_availability,
                                    energy_availability, coverage FROM kpi_monthly""")
    assert len(monthly) == kpis["turbine_id"].nunique() * 12
    kpis = kpis.assign(month=pd.to_datetime(kpis["day"]).dt.to_period("M"),
                       available=(kpis["time_availability"].fillna(0) * kpis["valid_stamps"]).round(),
                       expected_valid=kpis["expected_kwh"] - kpis["lost_data_gap_kwh"])
    sums = kpis.groupby(["turbine_id", "month"]).sum(numeric_only=True)
    for turbine, month, days, energy, stopped, time_availability, energy_availability, coverage in monthly:
        month_sums = sums.loc[(turbine, pd.Period(month, "M"))]
        assert days == kpis[(kpis["turbine_id"] == turbine)
                            & (kpis["month"] == pd.Period(month, "M"))].shape[0]
        assert energy == pytest.approx(month_sums["energy_kwh"])
        assert stopped == pytest.approx(month_sums["lost_stopped_kwh"])
        assert time_availability == pytest.approx(month_sums["available"] / month_sums["valid_stamps"])
        assert energy_availability == pytest.approx(1 - month_sums["lost_stopped_kwh"]
                                                    / month_sums["expected_valid"])
        assert coverage == pytest.approx(month_sums["valid_stamps"] / month_sums["stamps"])
    farm_days = sandbox.sql("SELECT day, turbines, expected_kwh, coverage FROM kpi_farm_daily ORDER BY day")
    by_day = kpis.groupby("day").agg(turbines=("turbine_id", "count"), expected=("expected_kwh", "sum"),
                                     valid=("valid_stamps", "sum"), stamps=("stamps", "sum"))
    assert len(farm_days) == len(by_day) == 365
    for day, turbines, expected, coverage in farm_days:
        assert turbines == by_day.loc[day, "turbines"]
        assert expected == pytest.approx(by_day.loc[day, "expected"])
        assert coverage == pytest.approx(by_day.loc[day, "valid"] / by_day.loc[day, "stamps"])


def test_a_reporting_run_without_new_records_changes_nothing(real):
    sandbox, _ = real
    before = sandbox.sql("SELECT * FROM kpi_daily ORDER BY ALL")
    sandbox.run("reporting")
    assert sandbox.sql("SELECT * FROM kpi_daily ORDER BY ALL") == before
