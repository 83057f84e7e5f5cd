"""The fleet: the farms and the SCADA export formats they deliver (`conf/base/farms.yml`),
checked once per run, and the rules that turn an export's local stamps into the
warehouse's UTC period starts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import numpy as np
import pandas as pd

#: The asset table's columns (the bundled `la-haute-borne-asset-table.csv`'s).
ASSET_COLUMNS = ["Wind_turbine_name", "Latitude", "Longitude", "Rated_power"]
PERIOD = pd.Timedelta("10min")


class FleetConfigError(click.ClickException):
    """The fleet's configuration cannot be run; the message names the farm. A Click
    exception, so that `kedro run` prints it as one line (`Error: ...`), not a traceback."""


@dataclass(frozen=True)
class ExportFormat:
    """How one kind of SCADA export file is laid out (`formats.<name>` in farms.yml)."""

    name: str
    columns: dict[str, str]                 # export column -> warehouse column (measurements)
    time_column: str
    time_format: str = "ISO8601"            # or a strptime format
    time_zone: str | None = None            # local time zone of the stamps; None: they carry an offset
    time_zone_metadata: str | None = None   # a metadata line that names the time zone instead
    period_label: str = "start"             # whether a stamp labels its period's start or end
    turbine_column: str | None = None       # one file for all turbines: the turbine id column
    turbine_metadata: str | None = None     # one file per turbine: a metadata line naming it ...
    turbine_file_pattern: str | None = None  # ... or the file name, `(?P<turbine>...)`
    units: dict[str, float] = field(default_factory=dict)  # warehouse column -> factor (W -> kW: 0.001)

    @classmethod
    def from_config(cls, name: str, config: dict) -> ExportFormat:
        turbine, time = config.get("turbine", {}), config["time"]
        export = cls(
            name=name, columns=dict(config["columns"]), time_column=time["column"],
            time_format=time.get("format", "ISO8601"), time_zone=time.get("time_zone"),
            time_zone_metadata=time.get("time_zone_metadata"), period_label=time.get("labels", "start"),
            turbine_column=turbine.get("column"), turbine_metadata=turbine.get("metadata"),
            turbine_file_pattern=turbine.get("file_pattern"), units=dict(config.get("units") or {}))
        if export.time_zone is not None and not known_time_zone(export.time_zone):
            raise FleetConfigError(f"format {name!r}: unknown time zone {export.time_zone!r}")
        if export.period_label not in ("start", "end"):
            raise FleetConfigError(f"format {name!r}: time.labels must be start or end")
        if not (export.turbine_column or export.turbine_metadata or export.turbine_file_pattern):
            raise FleetConfigError(f"format {name!r}: turbine needs a column, a metadata line or a "
                                   "file_pattern")
        return export

    @property
    def required_columns(self) -> list[str]:
        """The export columns a file must carry (else it is rejected whole)."""
        return [c for c in (self.turbine_column, self.time_column) if c] + list(self.columns)


@dataclass(frozen=True)
class Farm:
    farm_id: str
    assets: pd.DataFrame            # ASSET_COLUMNS and more, one row per turbine
    export_format: ExportFormat

    @property
    def turbines(self) -> list[str]:
        return sorted(self.assets["Wind_turbine_name"])


def check_fleet(farms: dict, formats: dict, asset_tables: dict[str, pd.DataFrame | Exception],
                ) -> dict[str, Farm]:
    """The fleet as configured, checked: every farm names a known format and has a
    readable asset table with the needed columns, and no turbine id is used twice in
    the fleet. Raises `FleetConfigError` naming the farm otherwise."""
    if not farms:
        raise FleetConfigError("farms.yml lists no farm")
    export_formats = {name: ExportFormat.from_config(name, config) for name, config in formats.items()}
    fleet, owner = {}, {}
    for farm_id, config in farms.items():
        if config.get("format") not in export_formats:
            raise FleetConfigError(f"farm {farm_id!r}: unknown format {config.get('format')!r} "
                                   f"(farms.yml formats: {', '.join(sorted(export_formats))})")
        assets = asset_tables.get(farm_id)
        if not isinstance(assets, pd.DataFrame):
            raise FleetConfigError(f"farm {farm_id!r}: cannot read its asset table {config.get('assets')!r}: "
                                   f"{assets}")
        if missing := [c for c in ASSET_COLUMNS if c not in assets.columns]:
            raise FleetConfigError(f"farm {farm_id!r}: its asset table lacks columns {missing}")
        for turbine in assets["Wind_turbine_name"].astype(str):
            if turbine in owner:
                raise FleetConfigError(f"farm {farm_id!r}: turbine id {turbine!r} is already a turbine of "
                                       f"farm {owner[turbine]!r} (turbine ids are unique across the fleet)")
            owner[turbine] = farm_id
        if not pd.api.types.is_string_dtype(assets["Wind_turbine_name"]):
            assets = assets.assign(Wind_turbine_name=assets["Wind_turbine_name"].astype(str))
        fleet[farm_id] = Farm(farm_id, assets, export_formats[config["format"]])
    return fleet


def turbines_table(fleet: dict[str, Farm]) -> pd.DataFrame:
    """The `turbines` table: one row per turbine of the fleet, with its farm."""
    def column(name: str, dtype: str) -> np.ndarray:  # NumPy: pd.concat of 100 small tables takes ~15 ms
        return np.concatenate([farm.assets[name].to_numpy(dtype) for farm in fleet.values()] or [[]])

    return pd.DataFrame({
        "farm_id": np.repeat(list(fleet), [len(farm.assets) for farm in fleet.values()]),
        "turbine_id": column("Wind_turbine_name", "object"), "latitude": column("Latitude", "float64"),
        "longitude": column("Longitude", "float64"), "rated_power_kw": column("Rated_power", "float64"),
    })


def turbine_of_file(export: ExportFormat, file_name: str, metadata: dict[str, str]) -> str | None:
    """The turbine a one-turbine file is of: from its metadata line, else its name."""
    if export.turbine_metadata and metadata.get(export.turbine_metadata):
        return metadata[export.turbine_metadata].strip()
    if export.turbine_file_pattern and (match := re.search(export.turbine_file_pattern, file_name)):
        return match.group("turbine")
    return None


def known_time_zone(name: str) -> bool:
    """Whether `name` is a time zone of the IANA database."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def stamps_to_utc(text: pd.Series, export: ExportFormat, time_zone: str | None,
                  turbine: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The UTC start of each record's 10-minute period, and why a stamp has none
    (`invalid_timestamp`, `ambiguous_local_time`, `nonexistent_local_time`), as a pair of
    Series on `text`'s index.

    Local time with daylight saving (`time_zone`): in the autumn's repeated hour, a
    turbine's records are taken in the order the file gives them (per turbine), the
    first occurrence of a stamp as summer time and the second as winter time, which is
    how a logger writes them; where that order cannot tell (one record in the hour, or
    out of order), the record is quarantined as `ambiguous_local_time`. A stamp in the
    spring's skipped hour does not exist: `nonexistent_local_time`. A stamp labelling
    its period's end is moved back by the 10-minute period."""
    reason = pd.Series(pd.NA, index=text.index, dtype="string")
    if time_zone is None:
        utc = pd.to_datetime(text, format=export.time_format, utc=True, errors="coerce")
        reason[utc.isna()] = "invalid_timestamp"
    else:
        local = pd.to_datetime(text, format=export.time_format, errors="coerce")
        reason[local.isna()] = "invalid_timestamp"
        if getattr(local.dt, "tz", None) is not None:  # an offset in the stamp wins
            utc = local.dt.tz_convert("UTC")
        else:
            utc = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
            for _, stamps in local.dropna().groupby(turbine.reindex(local.dropna().index), sort=False):
                localized = _localize(stamps, time_zone)
                utc[localized.index] = localized.dt.tz_convert("UTC")
            unresolved = local.notna() & utc.isna()
            if unresolved.any():
                kind = local[unresolved].dt.tz_localize(time_zone, ambiguous="NaT", nonexistent="NaT")
                nonexistent = local[unresolved].dt.tz_localize(time_zone, ambiguous=True, nonexistent="NaT")
                reason[unresolved & nonexistent.reindex(text.index).isna()] = "nonexistent_local_time"
                reason[unresolved & kind.reindex(text.index).isna() & reason.isna()] = "ambiguous_local_time"
    if export.period_label == "end":
        utc = utc - PERIOD
    return utc, reason


def _localize(stamps: pd.Series, time_zone: str) -> pd.Series:
    """One turbine's naive local stamps, in file order, to `time_zone`; NaT where the
    order cannot tell summer from winter time or the stamp does not exist."""
    try:
        return stamps.dt.tz_localize(time_zone, ambiguous="infer", nonexistent="NaT")
    except Exception:  # noqa: BLE001 - pytz/zoneinfo raise several types for an undecidable hour
        return stamps.dt.tz_localize(time_zone, ambiguous="NaT", nonexistent="NaT")


def rated_power(fleet: dict[str, Farm]) -> pd.Series:
    """Rated power (kW) by turbine id, for the whole fleet."""
    return pd.concat([farm.assets.set_index("Wind_turbine_name")["Rated_power"] for farm in fleet.values()]
                     ).astype(np.float64)
