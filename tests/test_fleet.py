"""The fleet's configuration checks and the export formats' time rules (fleet.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import FLEET_CONFIG, LHB
from turbine_monitor.fleet import ExportFormat, FleetConfigError, check_fleet, stamps_to_utc, turbine_of_file

FORMATS = FLEET_CONFIG["formats"]
ASSETS = LHB.assets


def farm(format_name: str = "la_haute_borne") -> dict:
    return {"assets": "assets.csv", "format": format_name, "landing": "landing"}


def assets(*turbines: str) -> pd.DataFrame:
    return ASSETS.head(len(turbines)).assign(Wind_turbine_name=list(turbines))


def test_the_bundled_fleet_is_la_haute_borne_in_its_format():
    assert list(check_fleet(FLEET_CONFIG["farms"], FORMATS, {"la-haute-borne": ASSETS})) == ["la-haute-borne"]
    assert LHB.export_format.name == "la_haute_borne" and LHB.turbines == sorted(ASSETS["Wind_turbine_name"])


@pytest.mark.parametrize(("farms", "tables", "message"), [
    ({"a": farm(), "b": farm()}, {"a": assets("T1", "T2"), "b": assets("T2")},
     "farm 'b': turbine id 'T2' is already a turbine of farm 'a'"),
    ({"a": farm("scada_2000")}, {"a": assets("T1")}, "farm 'a': unknown format 'scada_2000'"),
    ({"a": farm()}, {"a": FileNotFoundError("no such file: assets.csv")},
     "farm 'a': cannot read its asset table 'assets.csv'"),
    ({"a": farm()}, {"a": assets("T1").drop(columns=["Rated_power"])},
     "farm 'a': its asset table lacks columns ['Rated_power']"),
    ({}, {}, "farms.yml lists no farm"),
])
def test_a_fleet_that_cannot_run_stops_with_one_message_naming_the_farm(farms, tables, message):
    with pytest.raises(FleetConfigError) as error:
        check_fleet(farms, FORMATS, tables)
    assert message in error.value.message


def test_a_format_with_an_unknown_time_zone_or_no_turbine_source_is_refused():
    base = {"time": {"column": "t", "time_zone": "Mars/Olympus"}, "columns": {"p": "power_kw"},
            "turbine": {"column": "id"}}
    with pytest.raises(FleetConfigError, match="unknown time zone 'Mars/Olympus'"):
        ExportFormat.from_config("odd", base)
    with pytest.raises(FleetConfigError, match="turbine needs a column, a metadata line or a file_pattern"):
        ExportFormat.from_config("odd", {**base, "time": {"column": "t"}, "turbine": {}})


def test_greenbyte_turbine_comes_from_the_metadata_line_else_the_file_name():
    greenbyte = ExportFormat.from_config("greenbyte", FORMATS["greenbyte"])
    name = "Turbine_Data_Kelmarsh_1_2020-01-01_-_2021-01-01_228.csv"
    assert turbine_of_file(greenbyte, name, {"Turbine": "KWF1"}) == "KWF1"
    assert turbine_of_file(greenbyte, name, {}) == "Kelmarsh_1"
    assert turbine_of_file(greenbyte, "export.csv", {}) is None


def local_format(labels: str = "start") -> ExportFormat:
    return ExportFormat(name="local", columns={"p": "power_kw"}, time_column="t",
                        time_format="%Y-%m-%d %H:%M:%S", time_zone="Europe/Paris", period_label=labels,
                        turbine_column="id")


def to_utc(stamps: list[str], turbines: list[str], export: ExportFormat) -> tuple[list, list]:
    utc, reason = stamps_to_utc(pd.Series(stamps), export, export.time_zone, pd.Series(turbines))
    return ([None if pd.isna(t) else t.strftime("%H:%M") for t in utc],
            [None if pd.isna(r) else r for r in reason])


def test_autumn_repeated_hour_is_read_in_file_order_per_turbine():
    """2015-10-25, Paris: 02:00-02:59 happens twice (summer time, then winter time). A
    logger writes the hour twice in order; each turbine's records are taken in that
    order, whatever other turbines' records are interleaved."""
    hour = ["2015-10-25 01:50:00", "2015-10-25 02:00:00", "2015-10-25 02:50:00",
            "2015-10-25 02:00:00", "2015-10-25 02:50:00", "2015-10-25 03:00:00"]
    stamps = [s for s in hour for _ in range(2)]
    utc, reason = to_utc(stamps, ["A", "B"] * len(hour), local_format())
    assert reason == [None] * len(stamps)
    assert utc[::2] == ["23:50", "00:00", "00:50", "01:00", "01:50", "02:00"]
    assert utc[1::2] == utc[::2]


def test_an_ambiguous_stamp_the_order_cannot_resolve_is_quarantined_and_a_missing_hour_too():
    utc, reason = to_utc(["2015-10-25 02:10:00", "2015-03-29 02:10:00", "2015-03-29 03:10:00"],
                         ["A", "B", "B"], local_format())
    assert reason == ["ambiguous_local_time", "nonexistent_local_time", None]
    assert utc == [None, None, "01:10"]


def test_a_stamp_labelling_its_periods_end_is_moved_to_the_start():
    utc, _ = to_utc(["2015-06-01 12:10:00"], ["A"], local_format("end"))
    assert utc == ["10:00"]  # 12:10 CEST = 10:10 UTC, the period began 10 minutes earlier
