"""A synthetic fleet for scale tests and benchmarks, built from the real La Haute Borne
data: each farm's turbines replay the bundled 2014-2015 records shifted in time by an
offset of their own (so every farm has a distinct, realistic series), under ids of their
own (`synthetic-001`, turbine `SYN001-T01`), written as SCADA exports in the La Haute
Borne or the Greenbyte format. Synthetic: never used for accuracy claims.

    kedro synthetic-fleet --farms 10 --days 365 --env synthetic
    kedro run-fleet --env synthetic
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from turbine_monitor.project import PROJECT_ROOT

RAW_DIR = PROJECT_ROOT / "data" / "01_raw"
SOURCES = ["la-haute-borne-scada-2014.parquet", "la-haute-borne-scada-2015.parquet"]
#: The La Haute Borne export's measurement columns, as the bundled files carry them.
LHB_COLUMNS = ["Ba_avg", "P_avg", "Ws_avg", "Va_avg", "Ot_avg", "Ya_avg", "Wa_avg"]
#: Greenbyte column for each La Haute Borne column, and a few of the columns such exports
#: carry that the monitor ignores.
GREENBYTE_COLUMNS = {"Ws_avg": "Wind speed (m/s)", "Wa_avg": "Wind direction (°)",
                     "Ya_avg": "Nacelle position (°)", "P_avg": "Power (kW)",
                     "Ot_avg": "Nacelle ambient temperature (°C)",
                     "Ba_avg": "Blade angle (pitch position) A (°)"}
GREENBYTE_IGNORED = ["Wind speed, Standard deviation (m/s)", "Energy Export (kWh)", "Rotor speed (RPM)",
                     "Data Availability (%)"]
STAMP = pd.Timedelta("10min")
FARM_OFFSET_DAYS = 9      # farm k's turbines are shifted by k * 9 days ...
TURBINE_OFFSET_DAYS = 5   # ... turbine 4 and up of a farm by 5 more days per group of four


def farm_id(number: int) -> str:
    return f"synthetic-{number:03d}"


def turbine_id(number: int, turbine: int) -> str:
    return f"SYN{number:03d}-T{turbine + 1:02d}"


def source_records(raw_dir: Path = RAW_DIR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The bundled records (one row per turbine and 10-minute stamp, `ts` UTC, the
    export's measurement columns as numbers) and asset table."""
    frames = [pq.read_table(raw_dir / name).to_pandas() for name in SOURCES]
    records = pd.concat(frames, ignore_index=True)
    records["ts"] = pd.to_datetime(records["Date_time"], utc=True, format="ISO8601")
    for column in LHB_COLUMNS:
        records[column] = pd.to_numeric(records[column], errors="coerce")
    records = records.drop_duplicates(["Wind_turbine_name", "ts"]).sort_values(["Wind_turbine_name", "ts"])
    assets = pd.read_csv(raw_dir / "la-haute-borne-asset-table.csv")
    return records[["Wind_turbine_name", "ts", *LHB_COLUMNS]], assets


def farm_records(records: pd.DataFrame, number: int, turbines: int, start: pd.Timestamp,
                 days: int) -> pd.DataFrame:
    """Farm `number`'s records from `start` for `days`: turbine j replays bundled turbine
    j mod 4, shifted by the farm's and its group's offsets (wrapping around the bundled
    span); a stamp the bundled turbine lacks is missing here too."""
    names = sorted(records["Wind_turbine_name"].unique())
    first = records["ts"].min()
    span = int((records["ts"].max() - first) / STAMP) + 1
    slots = {name: np.full(span, -1) for name in names}
    for name, rows in records.groupby("Wind_turbine_name"):
        slots[name][((rows["ts"] - first) / STAMP).astype(int).to_numpy()] = rows.index.to_numpy()
    stamps = np.arange(days * 144)
    frames = []
    for j in range(turbines):
        offset = (number * FARM_OFFSET_DAYS + (j // len(names)) * TURBINE_OFFSET_DAYS) * 144
        rows = slots[names[j % len(names)]][(stamps + offset) % span]
        present = rows >= 0
        frame = records.loc[rows[present], LHB_COLUMNS].reset_index(drop=True)
        frame.insert(0, "ts", start + stamps[present] * STAMP)
        frame.insert(0, "turbine_id", turbine_id(number, j))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def asset_table(assets: pd.DataFrame, number: int, turbines: int) -> pd.DataFrame:
    """The farm's asset table: the bundled turbines' columns, coordinates moved per farm
    and per group of four."""
    rows = []
    for j in range(turbines):
        row = assets.iloc[j % len(assets)].copy()
        row["Wind_turbine_name"] = turbine_id(number, j)
        row["Latitude"] = row["Latitude"] + number * 0.5 + (j // len(assets)) * 0.02
        row["Longitude"] = row["Longitude"] + (j // len(assets)) * 0.02
        row["Manufacturer"] = "synthetic"
        rows.append(row)
    return pd.DataFrame(rows)


def write_la_haute_borne(records: pd.DataFrame, landing: Path, file_days: int) -> None:
    """One La Haute Borne export per `file_days` days: every turbine's records, stamps
    ISO-8601 in UTC."""
    export = records.rename(columns={"turbine_id": "Wind_turbine_name"})
    export["Date_time"] = export["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    period = (export["ts"] - export["ts"].min()).dt.days // file_days
    for _, chunk in export.groupby(period):
        name = f"scada-{chunk['ts'].min():%Y%m%d}.csv"
        chunk[["Wind_turbine_name", "Date_time", *LHB_COLUMNS]].to_csv(landing / name, index=False)


def write_greenbyte(records: pd.DataFrame, landing: Path, file_days: int, time_zone: str) -> None:
    """Greenbyte-style exports: one file per turbine and `file_days` days, `# ` metadata
    lines naming the turbine and the time zone, then the `# Date and time,...` header,
    stamps (period start) in local time of `time_zone`, several ignored columns."""
    zone = ZoneInfo(time_zone)
    for turbine, rows in records.groupby("turbine_id"):
        period = (rows["ts"] - rows["ts"].min()).dt.days // file_days
        for _, chunk in rows.groupby(period):
            local = chunk["ts"].dt.tz_convert(zone)
            export = pd.DataFrame({"# Date and time": local.dt.strftime("%Y-%m-%d %H:%M:%S")})
            for source, column in GREENBYTE_COLUMNS.items():
                export[column] = chunk[source].to_numpy()
            export["Wind speed, Standard deviation (m/s)"] = None
            export["Energy Export (kWh)"] = (chunk["P_avg"] / 6).round(3).to_numpy()
            export["Rotor speed (RPM)"] = None
            export["Data Availability (%)"] = 100.0
            first, last = local.iloc[0], local.iloc[-1]
            path = landing / f"Turbine_Data_{turbine}_{first:%Y-%m-%d}_-_{last:%Y-%m-%d}.csv"
            preamble = ("# Written by turbine-monitor's synthetic fleet generator (not real data).\n"
                        f"#\n# Turbine: {turbine}\n# Time zone: {time_zone}\n"
                        f"# Time interval: {first:%Y-%m-%d %H:%M:%S} - {last:%Y-%m-%d %H:%M:%S}\n#\n")
            path.write_text(preamble + export.to_csv(index=False), encoding="utf-8")


def write_synthetic_fleet(root: Path, farms: int, days: int, start: str = "2016-01-01",
                          export_format: str = "la_haute_borne", turbines: int = 4, file_days: int = 30,
                          time_zone: str = "UTC", first: int = 1, raw_dir: Path = RAW_DIR) -> dict[str, Any]:
    """Write farms `first` .. `first + farms - 1` under `root/<farm_id>/` (`assets.csv`,
    exports in `landing/`) and return their `farms:` entries for farms.yml."""
    records, assets = source_records(raw_dir)
    begin = pd.Timestamp(start, tz="UTC")
    entries = {}
    for number in range(first, first + farms):
        folder, farm = root / farm_id(number), farm_id(number)
        landing = folder / "landing"
        landing.mkdir(parents=True, exist_ok=True)
        asset_table(assets, number, turbines).to_csv(folder / "assets.csv", index=False)
        farm_rows = farm_records(records, number, turbines, begin, days)
        if export_format == "greenbyte":
            write_greenbyte(farm_rows, landing, file_days, time_zone)
        else:
            write_la_haute_borne(farm_rows, landing, file_days)
        entries[farm] = {"assets": str(folder / "assets.csv"), "format": export_format,
                         "landing": str(landing)}
    return entries


def write_farms_yml(path: Path, farms: dict[str, Any]) -> None:
    """A farms.yml whose `farms:` is `farms` (it replaces base's fleet in its environment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# A synthetic fleet (turbine_monitor.synthetic): not real data, never for accuracy claims.\n"
    path.write_text(header + yaml.safe_dump({"farms": farms}, sort_keys=False))
