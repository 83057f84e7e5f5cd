"""Nodes of the ingestion pipeline: raw SCADA exports in, warehouse rows out.

Every record read ends in exactly one of three places: accepted into `scada`,
counted as a duplicate of an identical record (a no-op), or quarantined with a
machine-readable reason. Per file, `rows_read = rows_accepted + rows_duplicate +
rows_quarantined`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from turbine_monitor.values import MALFORMED_LINE, SourceFile, UnreadableFileError

_KEY = ["turbine_id", "ts"]


def read_new_sources(
    bundled_history: dict[str, SourceFile],
    landing_files: dict[str, SourceFile],
    ingested_sources: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the source files whose content has not been ingested yet, bundled history
    first, then landing files by name. A file with the name, size and modification
    time of one already ingested is taken as that file without being read; any other
    is hashed, and skipped if its content was ingested under any name.

    Returns the raw records (every field as delivered text, plus `source_file` and
    `source_row`) and a manifest with one row per file: checksum, size, modification
    time, the columns it carries, and why it could not be read, if so.
    """
    stat_columns = ["source_file", "size_bytes", "modified_ns"]
    known = set(ingested_sources[stat_columns].itertuples(index=False, name=None))
    seen = set(ingested_sources["checksum"])
    frames, manifest = [], []
    for source in [*bundled_history.values(), *landing_files.values()]:
        if (source.name, source.size_bytes, source.modified_ns) in known or source.checksum in seen:
            continue
        seen.add(source.checksum)
        try:
            raw, read_error = source.read(), None
        except UnreadableFileError as exc:
            raw, read_error = pd.DataFrame(), str(exc)
        manifest.append({
            "source_file": source.name,
            "checksum": source.checksum,
            "size_bytes": source.size_bytes,
            "modified_ns": source.modified_ns,
            "columns": tuple(c for c in raw.columns if c != MALFORMED_LINE),
            "records": len(raw),
            "read_error": read_error,
        })
        frames.append(raw.assign(source_file=source.name, source_row=np.arange(len(raw))))
    records = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["source_file", "source_row"])
    return records, pd.DataFrame(manifest, columns=[
        "source_file", "checksum", "size_bytes", "modified_ns", "columns", "records", "read_error"])


def check_source_files(source_manifest: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Give each file its status: `rejected` when unreadable or lacking an export
    column (every record of it is then quarantined as `schema_mismatch`), `empty` when
    it holds no record, else `ingested`; `reason` says why for the first two."""
    expected = list(params["columns"])
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


def validate_records(
    raw_records: pd.DataFrame,
    checked_sources: pd.DataFrame,
    asset_table: pd.DataFrame,
    params: dict,
) -> pd.DataFrame:
    """Parse the raw records into warehouse columns (timestamps to UTC) and give each
    invalid one a `reason`, the first rule it breaks, and a `detail` for a person.

    Rules in order: malformed_row, schema_mismatch, unknown_turbine,
    invalid_timestamp, invalid_number, all_missing, `<column>_out_of_range`.
    """
    columns: dict[str, str] = params["columns"]
    raw = raw_records.reindex(columns=[*raw_records.columns.union(list(columns), sort=False)])
    raw[list(columns)] = raw[list(columns)].astype("str")
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
    sources = checked_sources.set_index("source_file")
    flag(raw["source_file"].map(sources["status"].eq("rejected")), "schema_mismatch",
         lambda rows: raw.loc[rows, "source_file"].map(sources["reason"]))

    by_name = {warehouse: raw[export] for export, warehouse in columns.items()}
    turbine = by_name.pop("turbine_id")
    records["turbine_id"] = turbine
    flag(~turbine.isin(asset_table["Wind_turbine_name"]), "unknown_turbine",
         lambda rows: "turbine " + turbine[rows].fillna("<missing>") + " is not in the asset table")

    stamp = by_name.pop("ts")
    records["ts"] = pd.to_datetime(stamp, format="ISO8601", utc=True, errors="coerce")
    flag(records["ts"].isna(), "invalid_timestamp",
         lambda rows: "cannot parse timestamp " + stamp[rows].fillna("<missing>"))

    for name, text in by_name.items():
        value = pd.to_numeric(text, errors="coerce").astype("float64")
        records[name] = value.where(np.isfinite(value))
        flag(text.notna() & records[name].isna(), "invalid_number",
             lambda rows, name=name, text=text: f"{name} is not a number: " + text[rows])
    flag(records[list(by_name)].isna().all(axis=1), "all_missing", "every measurement is missing")

    rated = records["turbine_id"].map(
        asset_table.set_index("Wind_turbine_name")["Rated_power"]).astype("float64")
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


def resolve_batch_duplicates(validated_records: pd.DataFrame) -> pd.DataFrame:
    """Among valid records of the batch with the same turbine and timestamp, keep the
    first; a later identical one is marked `duplicate`, a later different one is
    quarantined as `duplicate_conflict`."""
    records = validated_records.copy()
    valid = records[records["reason"].isna()]
    later = valid[valid.duplicated(_KEY, keep="first")]
    first = valid.drop_duplicates(_KEY, keep="first").set_index(_KEY)
    values = [c for c in records.columns if c not in
              ("source_file", "source_row", "reason", "detail", *_KEY)]
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


def assemble_ingestion_batch(
    records: pd.DataFrame, raw_records: pd.DataFrame, checked_sources: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Split the records into the warehouse batch: accepted `scada` rows, `quarantine`
    rows (with the raw record) and one `files` row per source file with its counts."""
    quarantined = records["reason"].notna()
    accepted = ~quarantined & ~records["duplicate"]
    scada = records.loc[accepted].drop(columns=["reason", "detail", "duplicate"])
    quarantine = records.loc[quarantined, ["source_file", "source_row", "reason", "detail"]]
    quarantine = quarantine.assign(
        raw_record=_raw_json(raw_records, quarantine.index, checked_sources))

    counts = pd.DataFrame({
        "source_file": records["source_file"],
        "rows_accepted": accepted, "rows_duplicate": records["duplicate"],
        "rows_quarantined": quarantined,
    }).groupby("source_file").sum().astype("int64")
    files = checked_sources[["source_file", "checksum", "size_bytes", "modified_ns", "status", "reason"]]
    files = files.join(counts, on="source_file")
    files[counts.columns] = files[counts.columns].fillna(0).astype("int64")
    files["rows_read"] = files[counts.columns].sum(axis=1)
    return {"files": files, "scada": scada, "quarantine": quarantine}
