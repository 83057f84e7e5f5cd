"""Export formats other than La Haute Borne's through the ingestion pipeline, on a real
warehouse: Greenbyte-style files (one per turbine, `# ` metadata lines, columns named with
units, many ignored), and a format in watts with local, end-labelled stamps. Every rule
of ingestion holds for them: reasons, accounting per file, idempotency."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import FLEET_CONFIG, RAW_DIR
from turbine_monitor.sandbox import Sandbox

GREENBYTE_HEADER = ("# Date and time,Wind speed (m/s),\"Wind speed, Standard deviation (m/s)\","
                    "Wind direction (°),Nacelle position (°),Power (kW),Nacelle ambient temperature (°C),"
                    "Blade angle (pitch position) A (°),Rotor speed (RPM)\n")


def greenbyte_row(stamp: str, power: str = "812.5", wind: str = "8.1") -> str:
    return f"{stamp},{wind},0.9,201.0,199.0,{power},12.5,-1.0,14.2\n"


def greenbyte_file(path: Path, rows: list[str], turbine: str | None = "KWF1", time_zone: str = "UTC") -> Path:
    metadata = "# This file was exported by Greenbyte Breeze.\n#\n"
    metadata += f"# Turbine: {turbine}\n" if turbine else ""
    metadata += f"# Time zone: {time_zone}\n#\n"
    path.write_text(metadata + GREENBYTE_HEADER + "".join(rows), encoding="utf-8")
    return path


@pytest.fixture
def fleet(tmp_path) -> Sandbox:
    """Two farms: `kelmarsh` (Greenbyte, turbines KWF1 and KWF2) and `watts` (a format
    of its own: power in W, Paris local time, stamps at the period's end; turbine W1)."""
    sandbox = Sandbox.create(tmp_path / "ws")
    lhb = pd.read_csv(RAW_DIR / "la-haute-borne-asset-table.csv")
    farms = {}
    for farm, turbines, export in (("kelmarsh", ["KWF1", "KWF2"], "greenbyte"),
                                   ("watts", ["W1"], "watts_local")):
        (tmp_path / farm).mkdir()
        assets = lhb.head(len(turbines)).assign(Wind_turbine_name=turbines)
        assets.to_csv(tmp_path / farm / "assets.csv", index=False)
        farms[farm] = {"assets": str(tmp_path / farm / "assets.csv"), "format": export,
                       "landing": str(tmp_path / farm / "landing")}
        (tmp_path / farm / "landing").mkdir()
    formats = {**FLEET_CONFIG["formats"], "watts_local": {
        "turbine": {"column": "unit"},
        "time": {"column": "timestamp", "format": "%d.%m.%Y %H:%M", "time_zone": "Europe/Paris",
                 "labels": "end"},
        "columns": {"active_power_w": "power_kw", "wind_ms": "wind_speed_ms", "temp_c": "outdoor_temp_c"},
        "units": {"power_kw": 0.001},
    }}
    (sandbox.conf / "local" / "farms.yml").write_text(
        yaml.safe_dump({"farms": farms, "formats": formats}, allow_unicode=True), encoding="utf-8")
    return sandbox


def landing(sandbox: Sandbox, farm: str) -> Path:
    return Path(sandbox.load("globals")["farms"][farm]["landing"])


def test_greenbyte_exports_are_ingested_by_turbine_from_metadata_or_file_name(fleet):
    greenbyte_file(landing(fleet, "kelmarsh") / "a.csv",
                   [greenbyte_row("2021-03-01 00:00:00"),
                    greenbyte_row("2021-03-01 00:10:00", power="900.0")])
    greenbyte_file(landing(fleet, "kelmarsh") / "Turbine_Data_KWF2_2021-03-01_-_2021-03-02_1.csv",
                   [greenbyte_row("2021-03-01 00:00:00", power="700.0")], turbine=None)
    fleet.run("ingestion")
    assert fleet.sql("SELECT turbine_id, ts::VARCHAR, power_kw, wind_speed_ms, wind_direction_deg, "
                     "outdoor_temp_c, pitch_deg, nacelle_angle_deg, vane_angle_deg FROM scada "
                     "ORDER BY ALL") == [
        ("KWF1", "2021-03-01 00:00:00+00", 812.5, 8.1, 201.0, 12.5, -1.0, 199.0, None),
        ("KWF1", "2021-03-01 00:10:00+00", 900.0, 8.1, 201.0, 12.5, -1.0, 199.0, None),
        ("KWF2", "2021-03-01 00:00:00+00", 700.0, 8.1, 201.0, 12.5, -1.0, 199.0, None)]
    assert fleet.sql("SELECT farm_id, status, rows_read, rows_accepted FROM ingested_files "
                     "ORDER BY source_file") == [
        ("kelmarsh", "ingested", 1, 1), ("kelmarsh", "ingested", 2, 2)]
    before = fleet.sql("SELECT * EXCLUDE (ingested_at) FROM scada ORDER BY ALL")
    fleet.run("ingestion")
    assert fleet.sql("SELECT * EXCLUDE (ingested_at) FROM scada ORDER BY ALL") == before


def test_watts_local_time_and_end_labels_are_converted(fleet):
    (landing(fleet, "watts") / "w.csv").write_text(
        "unit,timestamp,active_power_w,wind_ms,temp_c\n"
        "W1,01.06.2015 12:10,812500,8.1,17\n"      # CEST: ends 10:10 UTC, starts 10:00
        "W1,25.10.2015 02:10,100000,5.0,9\n"       # the repeated hour, alone: ambiguous
        "W1,29.03.2015 02:30,100000,5.0,9\n")      # the skipped hour: does not exist
    fleet.run("ingestion")
    assert fleet.sql("SELECT turbine_id, ts::VARCHAR, power_kw FROM scada") == [
        ("W1", "2015-06-01 10:00:00+00", 812.5)]
    assert sorted(fleet.sql("SELECT reason, farm_id FROM scada_quarantine")) == [
        ("ambiguous_local_time", "watts"), ("nonexistent_local_time", "watts")]


def test_malformed_metadata_and_missing_columns_are_quarantined_with_reasons(fleet):
    kelmarsh = landing(fleet, "kelmarsh")
    greenbyte_file(kelmarsh / "zone.csv", [greenbyte_row("2021-03-01 00:00:00")], time_zone="Nowhere/Land")
    greenbyte_file(kelmarsh / "nobody.csv", [greenbyte_row("2021-03-01 00:00:00")], turbine=None)
    greenbyte_file(kelmarsh / "stranger.csv", [greenbyte_row("2021-03-01 00:00:00")], turbine="W1")
    (kelmarsh / "no-power.csv").write_text("# Turbine: KWF1\n# Date and time,Wind speed (m/s)\n"
                                           "2021-03-01 00:00:00,8.1\n", encoding="utf-8")
    fleet.run("ingestion")
    reasons = dict(fleet.sql("SELECT source_file, reason FROM scada_quarantine"))
    assert reasons == {"kelmarsh/zone.csv": "invalid_time_zone", "kelmarsh/nobody.csv": "unknown_turbine",
                       "kelmarsh/stranger.csv": "unknown_turbine", "kelmarsh/no-power.csv": "schema_mismatch"}
    assert "turbine W1 is not in farm kelmarsh's asset table" in fleet.scalar(
        "SELECT detail FROM scada_quarantine WHERE source_file = 'kelmarsh/stranger.csv'")
    assert fleet.scalar("SELECT count(*) FROM scada") == 0
    assert fleet.scalar("SELECT count(*) FROM ingested_files WHERE rows_read <> "
                        "rows_accepted + rows_duplicate + rows_quarantined") == 0
