"""Live SCADA replay: feed the bundled 2015 records into the landing zone as a SCADA system would.

Each 10-minute stamp (UTC) becomes one CSV export, `scada-<YYYYmmddTHHMM>Z.csv`, holding that
stamp's records exactly as delivered (raw text, empty field for a missing value). At the default
speed (600x real time) one file lands every second. Files appear atomically, and a small JSON
state file remembers the last stamp written, so a stopped replay (Ctrl-C, SIGTERM, even kill -9)
resumes where it was. Paths and speed come from Kedro config (`conf/base/replay.yml`).

    uv run python entrypoint/replay_scada.py [--speed X] [--max-stamps N] [--reset]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from turbine_monitor.project import PROJECT_ROOT, load_config

STAMP_SECONDS = 600  # the SCADA records are 10-minute averages


def read_stamps(source: Path) -> tuple[str, list[tuple[datetime, list[str]]]]:
    """The header line of `source`'s columns (the export's, in its order) and its records
    as CSV lines grouped by UTC stamp, in time order; within a stamp the lines keep the
    source's row order, so a stamp always renders to the same bytes."""
    table = pq.ParquetFile(source).read()  # (pq.read_table: +0.6 s of imports)
    seconds = pc.cast(pc.cast(table["Date_time"], pa.timestamp("s", "UTC")), pa.int64())
    lines = pc.binary_join_element_wise(*(pc.fill_null(table[c], "") for c in table.column_names), ",")
    groups: dict[int, list[str]] = defaultdict(list)
    for stamp, line in zip(seconds.to_pylist(), lines.to_pylist(), strict=True):
        groups[stamp].append(line)
    return ",".join(table.column_names), [
        (datetime.fromtimestamp(stamp, UTC), group) for stamp, group in sorted(groups.items())]


def file_name(stamp: datetime) -> str:
    """Unique per stamp; names sort in time order."""
    return f"scada-{stamp:%Y%m%dT%H%M}Z.csv"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `path` so that readers see the whole file or none: write a hidden temporary
    (`.<name>.tmp`, which no `*.csv` glob matches) in the same folder, fsync, rename, fsync
    the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def load_state(state_file: Path) -> datetime | None:
    """The last stamp written, or None when the replay has not started."""
    if not state_file.exists():
        return None
    return datetime.fromisoformat(json.loads(state_file.read_text())["last_stamp"])


def save_state(state_file: Path, stamp: datetime) -> None:
    state = {"last_stamp": stamp.isoformat(), "last_file": file_name(stamp)}
    write_atomic(state_file, (json.dumps(state) + "\n").encode())


class StopRequest:
    """Ctrl-C and SIGTERM set `requested`; the replay stops after the file in hand."""

    def __init__(self) -> None:
        self.requested = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def sleep_until(self, deadline: float) -> None:
        """Sleep until `deadline` (time.monotonic()) or a stop request, whichever comes first."""
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))


def replay(source: Path, landing: Path, state_file: Path, speed: float, max_stamps: int | None) -> None:
    """Write the stamps after the saved state, one file per stamp, stamp i of this run due
    `i * 600 / speed` seconds after the start (no waiting at speed 0)."""
    stop = StopRequest()
    last = load_state(state_file)
    header, stamps = read_stamps(source)
    pending = [(stamp, lines) for stamp, lines in stamps if last is None or stamp > last]
    if not pending:
        print(f"Replay finished: {source} holds no records after the stamp saved in {state_file}.")
        return
    landing.mkdir(parents=True, exist_ok=True)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    interval = STAMP_SECONDS / speed if speed else 0.0
    pace = f"at {speed:g}x real time" if speed else "as fast as possible"
    print(f"Replaying {len(pending)} stamps from {file_name(pending[0][0])} on into {landing} {pace}.",
          flush=True)
    start = time.monotonic()
    written = 0
    for i, (stamp, lines) in enumerate(pending[:max_stamps]):
        stop.sleep_until(start + i * interval)
        if stop.requested:
            break
        write_atomic(landing / file_name(stamp), "\n".join([header, *lines, ""]).encode())
        save_state(state_file, stamp)
        last, written = stamp, written + 1
    if written == len(pending):
        print(f"Replay finished: the data ends with {file_name(last)}.")
    elif last is None:
        print("Stopped before the first file.")
    else:
        print(f"Stopped after {written} files, the last being {file_name(last)}; run again to resume.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf-source", type=Path, default=PROJECT_ROOT / "conf",
                        help="Kedro configuration folder (default: the project's conf/)")
    parser.add_argument("--env", default="local", help="Kedro config environment (default: local)")
    parser.add_argument("--speed", type=float, help="times real time (config default 600); 0 = no waiting")
    parser.add_argument("--max-stamps", type=int, metavar="N", help="stop after N files")
    parser.add_argument("--reset", action="store_true", help="forget the saved state: start over")
    args = parser.parse_args(argv)
    config = load_config("replay", args.conf_source, args.env)["replay"]
    speed = float(config["speed"] if args.speed is None else args.speed)
    if speed < 0 or (args.max_stamps or 0) < 0:
        parser.error("--speed and --max-stamps must be >= 0")
    state_file = PROJECT_ROOT / config["state_file"]
    if args.reset:
        state_file.unlink(missing_ok=True)
    replay(PROJECT_ROOT / config["source"], PROJECT_ROOT / config["landing"], state_file, speed,
           args.max_stamps)


if __name__ == "__main__":
    main()
