"""Nodes of the ingestion pipeline: raw SCADA exports in, warehouse rows out.

Every record read ends in exactly one of three places: accepted into `scada`,
counted as a duplicate of an identical record (a no-op), or quarantined with a
machine-readable reason. Per file, `rows_read = rows_accepted + rows_duplicate +
rows_quarantined`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from turbine_monitor import fleet
from turbine_monitor.fleet import ExportFormat, Farm
from turbine_monitor.values import MALFORMED_LINE, SourceFile, UnreadableFileError

_KEY = ["turbine_id", "ts"]
#: The warehouse's measurement columns; a format maps some of them, the others stay null.
MEASUREMENTS = ["power_kw", "wind_speed_ms", "wind_direction_deg", "outdoor_temp_c", "pitch_deg",
                "nacelle_angle_deg", "vane_angle_deg"]


def check_fleet(fleet_config: dict, farm_assets: dict[str, pd.DataFrame | Exception]) -> dict[str, Farm]:
    """The fleet of `conf/base/farms.yml` (`farms`, `formats`), checked: stops the run
    with one message naming the farm whose format is unknown, whose asset table is
    missing, or whose turbine id another farm uses."""
    return fleet.check_fleet(fleet_config["farms"], fleet_config["formats"], farm_assets)


def list_turbines(farms: dict[str, Farm]) -> pd.DataFrame:
    """The `turbines` table: every turbine of the fleet with its farm."""
    return fleet.turbines_table(farms)


def ingest_new_sources(farm_sources: dict[str, dict[str, SourceFile]], ingested_sources: pd.DataFrame,
                       farms: dict[str, Farm], params: dict) -> Iterator[dict[str, pd.DataFrame]]:
    """The files not ingested before (`new_sources`), read, checked, validated and
    deduplicated, as warehouse batches of at most `batch_bytes` of files (a larger file
    alone), the files of farms that share an export format together: memory follows the
    batch, not the fleet, and a live run's one new file per farm is one batch."""
    by_format: dict[str, list[tuple[str, SourceFile]]] = {}
    for farm_id, source in new_sources(farm_sources, ingested_sources):
        by_format.setdefault(farms[farm_id].export_format.name, []).append((farm_id, source))
    for batch in (batch for files in by_format.values() for batch in _batches(files, params["batch_bytes"])):
        raw, manifest = read_sources([source for _, source in batch])
        manifest["farm_id"] = [farm_id for farm_id, _ in batch]
        export = farms[batch[0][0]].export_format
        checked = check_source_files(manifest, export)
        records = resolve_batch_duplicates(validate_records(raw, checked, export, farms, params))
        yield assemble_ingestion_batch(records, raw, checked)


def _batches(files: list[tuple[str, SourceFile]], batch_bytes: int) -> Iterator[list[tuple[str, SourceFile]]]:
    """`files` in order, in runs of at most `batch_bytes` (a larger file alone)."""
    batch, size = [], 0
    for farm_id, source in files:
        if batch and size + source.size_bytes > batch_bytes:
            yield batch
            batch, size = [], 0
        batch.append((farm_id, source))
        size += source.size_bytes
    if batch:
        yield batch


def new_sources(farm_sources: dict[str, dict[str, SourceFile]], ingested_sources: pd.DataFrame,
                ) -> list[tuple[str, SourceFile]]:
    """Each farm's files whose content has not been ingested yet, in order, with the
    farm. A file with the name, size and modification time of one already ingested is
    taken as that file without being read; any other is hashed, and skipped if its
    content was ingested under any name (or appears twice here)."""
    stat_columns = ["source_file", "size_bytes", "modified_ns"]
    known = set(ingested_sources[stat_columns].itertuples(index=False, name=None))
    seen = set(ingested_sources["checksum"])
    new = []
    for farm_id, sources in farm_sources.items():
        for source in sources.values():
            if (source.name, source.size_bytes, source.modified_ns) in known or source.checksum in seen:
                continue
            seen.add(source.checksum)
            new.append((farm_id, source))
    return new


def read_sources(sources: list[SourceFile]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read `sources`: their raw records (every field as delivered text, plus
    `source_file` and `source_row`) and a manifest with one row per file: checksum,
    size, modification time, metadata lines, the columns it carries, and why it could
    not be read, if so."""
    tables, manifest = [], []
    for source in sources:
        try:
            raw, read_error = source.read(), None
            metadata = source.metadata()
        except UnreadableFileError as exc:
            raw, read_error, metadata = pa.table({}), str(exc), {}
        manifest.append({
            "source_file": source.name,
            "checksum": source.checksum,
            "size_bytes": source.size_bytes,
            "modified_ns": source.modified_ns,
            "metadata": metadata,
            "columns": tuple(c for c in raw.column_names if c != MALFORMED_LINE),
            "records": raw.num_rows,
            "read_error": read_error,
        })
        tables.append(raw.append_column("source_file", pa.repeat(source.name, raw.num_rows))
                      .append_column("source_row", pa.array(np.arange(raw.num_rows))))
    # One conversion to pandas for the batch (~1 ms a table: a live run reads a file per farm).
    records = pa.concat_tables(tables, promote_options="default").to_pandas() if tables else pd.DataFrame(
        columns=["source_file", "source_row"])
    return records, pd.DataFrame(manifest, columns=[
        "source_file", "checksum", "size_bytes", "modified_ns", "metadata", "columns", "records",
        "read_error"])


def check_source_files(source_manifest: pd.DataFrame, export: ExportFormat) -> pd.DataFrame:
    """Give each file its status: `rejected` when unreadable or lacking a column of its
    format (every record of it is then quarantined as `schema_mismatch`), `empty` when
    it holds no record, else `ingested`; `reason` says why for the first two."""
    expected = export.required_columns
    missing = source_manifest["columns"].map(lambda cols: [c for c in expected if c not in cols])
    schema_mismatch = missing.map(bool) & source_manifest["read_error"].isna()
    empty = source_manifest["records"].eq(0) & source_manifest["read_error"].isna()
    checked = source_manifest.copy()
    checked["status"] = np.select(
        [source_manifest["read_error"].notna(), empty, schema_mismatch],
        ["rejected", "empty", "rejected"], "ingested")
    checked["reason"] = np.select(
        [source_manifest["read_error"].notna(), empty, schema_mismatch],
        ["unreadable: " + source_manifest["read_error"].fillna(""), "no records",
         "schema_mismatch: lacks columns " + missing.map(", ".join)], None)
    return checked


def validate_records(raw_records: pd.DataFrame, checked_sources: pd.DataFrame, export: ExportFormat,
                     farms: dict[str, Farm], params: dict) -> pd.DataFrame:
    """Parse the raw records of `export`-format files (each file of the farm in
    `checked_sources.farm_id`) into warehouse columns (stamps to the UTC start of their
    period, units converted) and give each invalid one a `reason`, the first rule it
    breaks, and a `detail` for a person.

    Rules in order: malformed_row, schema_mismatch, unknown_turbine (not in its farm's
    asset table, or none named), invalid_time_zone (of a file's `Time zone:` line),
    invalid_timestamp, ambiguous_local_time, nonexistent_local_time
    (`fleet.stamps_to_utc`), invalid_number, all_missing, `<column>_out_of_range`.
    """
    sources = checked_sources.set_index("source_file")
    raw = raw_records.reindex(columns=[*raw_records.columns.union(export.required_columns, sort=False)])
    records = pd.DataFrame({
        "source_file": raw["source_file"],
        "source_row": raw["source_row"].astype("int64"),
        "reason": pd.Series(pd.NA, index=raw.index, dtype="string"),
        "detail": pd.Series(pd.NA, index=raw.index, dtype="string"),
    })

    def flag(mask: pd.Series, reason: str, detail: Callable[[pd.Series], pd.Series] | str) -> None:
        """Give `reason` to the rows in `mask` that have none yet; `detail` is
        computed for those rows only."""
        rows = mask.to_numpy(dtype=bool, na_value=False) & records["reason"].isna().to_numpy()
        if rows.any():
            records.loc[rows, "reason"] = reason
            records.loc[rows, "detail"] = detail if isinstance(detail, str) else detail(rows)

    if MALFORMED_LINE in raw:
        flag(raw[MALFORMED_LINE].notna(), "malformed_row", "field count differs from the header")
    flag(raw["source_file"].map(sources["status"].eq("rejected")), "schema_mismatch",
         lambda rows: raw.loc[rows, "source_file"].map(sources["reason"]))

    farm = raw["source_file"].map(sources["farm_id"])
    if export.turbine_column:
        turbine = raw[export.turbine_column].astype("str")
    else:
        of_file = {name: fleet.turbine_of_file(export, name.split("/", 1)[-1], metadata)
                   for name, metadata in sources["metadata"].items()}
        turbine = raw["source_file"].map(of_file).astype("string")
    records["turbine_id"] = turbine
    assets = fleet.turbines_table({farm_id: farms[farm_id] for farm_id in sources["farm_id"].unique()})
    in_farm = pd.Series(pd.MultiIndex.from_arrays([farm, turbine]).isin(
        pd.MultiIndex.from_frame(assets[["farm_id", "turbine_id"]])), index=raw.index)
    flag(~in_farm, "unknown_turbine",
         lambda rows: "turbine " + turbine[rows].fillna("<missing>") + " is not in farm " + farm[rows]
         + "'s asset table")

    stamp = raw[export.time_column].astype("str")
    zone = pd.Series(export.time_zone, index=raw.index, dtype="object")
    if export.time_zone_metadata:  # a file may name its own time zone
        named = sources["metadata"].map(lambda metadata: metadata.get(export.time_zone_metadata))
        zone = raw["source_file"].map(named).fillna(zone) if named.notna().any() else zone
    unknown_zone = zone.isin([z for z in zone.dropna().unique() if not fleet.known_time_zone(z)])
    flag(unknown_zone, "invalid_time_zone", lambda rows: "unknown time zone " + zone[rows].astype("str"))
    records["ts"], stamp_reason = _stamps(stamp, export, zone.mask(unknown_zone), turbine)
    for reason in ("invalid_timestamp", "ambiguous_local_time", "nonexistent_local_time"):
        flag(stamp_reason.eq(reason), reason,
             lambda rows, reason=reason: f"{reason}: " + stamp[rows].fillna("<missing>"))

    for export_column, name in export.columns.items():
        text = raw[export_column].astype("str")
        value = pd.to_numeric(text, errors="coerce").astype("float64") * export.units.get(name, 1.0)
        records[name] = value.where(np.isfinite(value))
        flag(text.notna() & records[name].isna(), "invalid_number",
             lambda rows, name=name, text=text: f"{name} is not a number: " + text[rows])
    measurements = [c for c in MEASUREMENTS if c in records]
    records = records.reindex(columns=[*records.columns, *[c for c in MEASUREMENTS if c not in records]])
    flag(records[measurements].isna().all(axis=1), "all_missing", "every measurement is missing")

    rated = records["turbine_id"].map(assets.set_index("turbine_id")["rated_power_kw"]).astype("float64")
    for name, (low, high) in params["valid_ranges"].items():
        if name == "power_kw":
            high = rated * params["max_power_fraction_of_rated"]
        value = records[name]
        outside = (value < low) | (value > high) if high is not None else value < low
        shown_high = "max_power_fraction_of_rated x rated" if name == "power_kw" else high
        flag(outside, f"{name}_out_of_range",
             lambda rows, name=name, value=value, low=low, high=shown_high:
             f"{name}=" + value[rows].astype("str") + f" outside [{low}, {high}]")
    return records


def _stamps(stamp: pd.Series, export: ExportFormat, time_zone: pd.Series,
            turbine: pd.Series) -> tuple[pd.Series, pd.Series]:
    """`fleet.stamps_to_utc` for each time zone of the records (None: the stamps carry
    their offset)."""
    utc = pd.Series(pd.NaT, index=stamp.index, dtype="datetime64[ns, UTC]")
    reason = pd.Series(pd.NA, index=stamp.index, dtype="string")
    for zone, rows in stamp.groupby(time_zone.fillna(""), sort=False).groups.items():
        utc[rows], reason[rows] = fleet.stamps_to_utc(stamp[rows], export, zone or None, turbine[rows])
    return utc, reason


def resolve_batch_duplicates(validated_records: pd.DataFrame) -> pd.DataFrame:
    """Among valid records of the batch with the same turbine and timestamp, keep the
    first; a later identical one is marked `duplicate`, a later different one is
    quarantined as `duplicate_conflict`."""
    records = validated_records.copy()
    valid = records[records["reason"].isna()]
    later = valid[valid.duplicated(_KEY, keep="first")]
    first = valid.drop_duplicates(_KEY, keep="first").set_index(_KEY)
    values = [c for c in MEASUREMENTS if c in records.columns]
    kept = first.loc[pd.MultiIndex.from_frame(later[_KEY])]
    later_values = later[values].to_numpy(dtype="float64")
    kept_values = kept[values].to_numpy(dtype="float64")
    same = ((later_values == kept_values) | (np.isnan(later_values) & np.isnan(kept_values))).all(axis=1)
    records["duplicate"] = False
    records.loc[later.index[same], "duplicate"] = True
    conflict = later.index[~same]
    records.loc[conflict, "reason"] = "duplicate_conflict"
    records.loc[conflict, "detail"] = (
        "differs from " + kept["source_file"].to_numpy()[~same]
        + " row " + kept["source_row"].astype("string").to_numpy()[~same])
    return records


def _raw_json(raw_records: pd.DataFrame, rows: pd.Index, manifest: pd.DataFrame) -> pd.Series:
    """The quarantined records as delivered: a JSON object of their file's columns."""
    columns = manifest.set_index("source_file")["columns"]
    parts = []
    for source_file, group in raw_records.loc[rows].groupby("source_file", sort=False):
        file_columns = list(columns[source_file]) or list(group.columns)
        if MALFORMED_LINE in group and group[MALFORMED_LINE].notna().any():
            file_columns = [*file_columns, MALFORMED_LINE]
        lines = group[file_columns].to_json(orient="records", lines=True).splitlines()
        parts.append(pd.Series(lines, index=group.index))
    return pd.concat(parts) if parts else pd.Series(dtype="string")


def assemble_ingestion_batch(records: pd.DataFrame, raw_records: pd.DataFrame,
                             checked_sources: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split the records into the warehouse batch: accepted `scada` rows, `quarantine`
    rows (with the raw record) and one `files` row per source file with its counts,
    both of the latter marked with their file's farm."""
    quarantined = records["reason"].notna()
    accepted = ~quarantined & ~records["duplicate"]
    scada = records.loc[accepted].drop(columns=["reason", "detail", "duplicate"])
    quarantine = records.loc[quarantined, ["source_file", "source_row", "reason", "detail"]]
    quarantine = quarantine.assign(
        raw_record=_raw_json(raw_records, quarantine.index, checked_sources),
        farm_id=quarantine["source_file"].map(checked_sources.set_index("source_file")["farm_id"]))

    counts = pd.DataFrame({
        "source_file": records["source_file"],
        "rows_accepted": accepted, "rows_duplicate": records["duplicate"],
        "rows_quarantined": quarantined,
    }).groupby("source_file").sum().astype("int64")
    files = checked_sources[["source_file", "farm_id", "checksum", "size_bytes", "modified_ns", "status",
                             "reason"]]
    files = files.join(counts, on="source_file")
    files[counts.columns] = files[counts.columns].fillna(0).astype("int64")
    files["rows_read"] = files[counts.columns].sum(axis=1)
    return {"files": files, "scada": scada, "quarantine": quarantine}
