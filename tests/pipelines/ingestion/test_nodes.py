"""Unit tests of the ingestion nodes: one test per validation rule and reason."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import FARMS, LHB, PARAMETERS
from turbine_monitor.pipelines.ingestion.nodes import (
    assemble_ingestion_batch,
    check_source_files,
    resolve_batch_duplicates,
    validate_records,
)

PARAMS = PARAMETERS["ingestion"]
EXPORT = LHB.export_format
GOOD = {
    "Wind_turbine_name": "R80711", "Date_time": "2015-06-01T12:00:00+02:00", "Ba_avg": "-1.0",
    "P_avg": "812.5", "Ws_avg": "8.1", "Va_avg": "1.2", "Ot_avg": "17.3", "Ya_avg": "201.0",
    "Wa_avg": "202.2",
}


def manifest_for(raw: pd.DataFrame) -> pd.DataFrame:
    files = raw.groupby("source_file", sort=False).size()
    return check_source_files(pd.DataFrame({
        "source_file": files.index, "checksum": files.index, "size_bytes": 1, "modified_ns": 0,
        "metadata": [{}] * len(files),
        "columns": [tuple(c for c in raw.columns if c not in ("source_file", "source_row"))] * len(files),
        "records": files.to_numpy(), "read_error": None, "farm_id": LHB.farm_id,
    }), EXPORT)


def validate(*overrides: dict) -> pd.DataFrame:
    raw = pd.DataFrame([{**GOOD, **o} for o in overrides], dtype="str")
    raw["source_file"] = "f.csv"
    raw["source_row"] = range(len(raw))
    return validate_records(raw, manifest_for(raw), EXPORT, FARMS, PARAMS)


def test_valid_record_is_parsed_to_warehouse_columns_in_utc():
    row = validate({}).iloc[0]
    assert pd.isna(row["reason"])
    assert row["turbine_id"] == "R80711"
    assert row["ts"] == pd.Timestamp("2015-06-01T10:00:00Z")
    assert (row["power_kw"], row["wind_speed_ms"], row["pitch_deg"]) == (812.5, 8.1, -1.0)


@pytest.mark.parametrize(("override", "reason"), [
    ({"Wind_turbine_name": "R99999"}, "unknown_turbine"),
    ({"Wind_turbine_name": None}, "unknown_turbine"),
    ({"Date_time": "2015-13-45T99:00:00+02:00"}, "invalid_timestamp"),
    ({"Date_time": None}, "invalid_timestamp"),
    ({"P_avg": "12,5"}, "invalid_number"),
    ({"Ws_avg": "nan"}, "invalid_number"),
    ({k: None for k in ("Ba_avg", "P_avg", "Ws_avg", "Va_avg", "Ot_avg", "Ya_avg", "Wa_avg")},
     "all_missing"),
    ({"Ws_avg": "-0.5"}, "wind_speed_ms_out_of_range"),
    ({"Ot_avg": "-273.20001"}, "outdoor_temp_c_out_of_range"),
    ({"P_avg": "2600"}, "power_kw_out_of_range"),
    ({"P_avg": "-500"}, "power_kw_out_of_range"),
    ({"Ba_avg": "262.6"}, "pitch_deg_out_of_range"),
    ({"Wa_avg": "361"}, "wind_direction_deg_out_of_range"),
])
def test_each_rule_quarantines_with_its_reason(override, reason):
    row = validate(override).iloc[0]
    assert row["reason"] == reason
    assert isinstance(row["detail"], str) and row["detail"]


def test_missing_single_measurement_is_accepted():
    assert pd.isna(validate({"Ot_avg": None}).iloc[0]["reason"])


def test_power_limit_follows_rated_power_from_asset_table():
    rated = LHB.assets.set_index("Wind_turbine_name")["Rated_power"]["R80711"]
    limit = rated * PARAMS["max_power_fraction_of_rated"]
    rows = validate({"P_avg": str(limit - 1)}, {"P_avg": str(limit + 1),
                                                "Date_time": "2015-06-01T12:10:00+02:00"})
    assert pd.isna(rows["reason"].iloc[0])
    assert rows["reason"].iloc[1] == "power_kw_out_of_range"


def test_file_lacking_a_column_is_rejected_whole():
    raw = pd.DataFrame([GOOD, GOOD], dtype="str").drop(columns=["Ot_avg"])
    raw["source_file"], raw["source_row"] = "old-format.csv", [0, 1]
    checked = manifest_for(raw)
    assert checked["status"].tolist() == ["rejected"]
    assert "Ot_avg" in checked["reason"].iloc[0]
    records = validate_records(raw, checked, EXPORT, FARMS, PARAMS)
    assert records["reason"].eq("schema_mismatch").all()


def test_in_batch_duplicates_identical_is_noop_conflicting_is_quarantined():
    later = {"Date_time": "2015-06-01T12:10:00+02:00"}
    records = resolve_batch_duplicates(validate({}, later, {}, {"P_avg": "900.0"}))
    assert records["duplicate"].tolist() == [False, False, True, False]
    assert records["reason"].isna().tolist() == [True, True, True, False]
    assert records["reason"].iloc[3] == "duplicate_conflict"
    assert "row 0" in records["detail"].iloc[3]


def test_batch_accounting_adds_up_per_file():
    raw = pd.DataFrame([GOOD, GOOD, {**GOOD, "Ws_avg": "-3"}, {**GOOD, "P_avg": "1.0"}], dtype="str")
    raw["source_file"], raw["source_row"] = "f.csv", range(4)
    checked = manifest_for(raw)
    records = resolve_batch_duplicates(validate_records(raw, checked, EXPORT, FARMS, PARAMS))
    batch = assemble_ingestion_batch(records, raw, checked)
    f = batch["files"].iloc[0]
    assert (f["rows_read"], f["rows_accepted"], f["rows_duplicate"], f["rows_quarantined"]) == (4, 1, 1, 2)
    assert len(batch["scada"]) == 1
    assert sorted(batch["quarantine"]["reason"]) == ["duplicate_conflict", "wind_speed_ms_out_of_range"]
    assert '"Ws_avg":"-3"' in batch["quarantine"]["raw_record"].iloc[0]
