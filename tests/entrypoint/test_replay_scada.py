"""The live SCADA replay (entrypoint/replay_scada.py), run as a real process on a temporary
landing zone and state file, against the bundled 2015 records."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import HEADER, PROJECT_ROOT, RAW_DIR
from turbine_monitor.sandbox import Sandbox

SOURCE = RAW_DIR / "la-haute-borne-scada-2015.parquet"
FIRST_STAMP = datetime(2015, 1, 1, tzinfo=UTC)
TEN_MINUTES = timedelta(minutes=10)


@pytest.fixture(scope="module")
def source_rows() -> dict[datetime, list[list[str]]]:
    """The parquet rows as export text (null -> empty field), by UTC stamp, in file order."""
    rows: dict[datetime, list[list[str]]] = defaultdict(list)
    for record in pq.ParquetFile(SOURCE).read().to_pylist():
        stamp = datetime.fromisoformat(record["Date_time"]).astimezone(UTC)
        rows[stamp].append([value or "" for value in record.values()])
    return rows


class Replay:
    """A sandbox for the replay (landing zone and state file under `root`) and ways to run
    the script on it."""

    def __init__(self, root: Path):
        sandbox = Sandbox.create(root)
        self.conf, self.landing = sandbox.conf, sandbox.landing
        self.state_file = root / "state" / "replay_state.json"
        self.configure(source="${globals:paths.raw}/la-haute-borne-scada-2015.parquet")

    def configure(self, source: str) -> None:
        (self.conf / "local" / "replay.yml").write_text(yaml.safe_dump({"replay": {
            "source": source, "state_file": str(self.state_file), "speed": 600,
        }}))  # the landing folder: base's, the bundled farm's (farms.yml)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "entrypoint/replay_scada.py", "--conf-source", str(self.conf), *args]

    def run(self, *args: str) -> str:
        """Run to the end; return its output."""
        done = subprocess.run(self.command(*args), cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def wait_for_files(self, count: int, timeout: float = 30) -> None:
        """Wait until a background run has written `count` files."""
        deadline = time.monotonic() + timeout
        while len(self.files()) < count:
            assert time.monotonic() < deadline, f"fewer than {count} files after {timeout} s"
            time.sleep(0.05)

    def files(self) -> dict[str, bytes]:
        """The landing zone's CSV files by name, in name order."""
        return {p.name: p.read_bytes() for p in sorted(self.landing.glob("*.csv"))}

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def leftovers(self) -> list[str]:
        """Temporary files left in the landing zone or next to the state file."""
        return [p.name for folder in (self.landing, self.state_file.parent) for p in folder.iterdir()
                if p.name.endswith(".tmp")]


@pytest.fixture
def replay(tmp_path: Path) -> Replay:
    return Replay(tmp_path)


def stamp_of(name: str) -> datetime:
    return datetime.strptime(name, "scada-%Y%m%dT%H%MZ.csv").replace(tzinfo=UTC)


def rows_of(content: bytes) -> list[list[str]]:
    """The data rows of a complete export file (asserts the header and the final line end)."""
    text = content.decode()
    assert text.endswith("\n") and "\r" not in text and '"' not in text
    header, *lines = text[:-1].split("\n")
    assert header == HEADER.rstrip()
    return [line.split(",") for line in lines]


def assert_consecutive_from_first_stamp(names: list[str]) -> None:
    stamps = [stamp_of(name) for name in names]
    assert stamps == [FIRST_STAMP + i * TEN_MINUTES for i in range(len(stamps))]


def test_files_are_complete_csvs_in_the_export_format(replay, source_rows):
    replay.run("--max-stamps", "30", "--speed", "0")
    files = replay.files()
    assert len(files) == 30
    assert_consecutive_from_first_stamp(list(files))
    for name, content in files.items():
        assert rows_of(content) == source_rows[stamp_of(name)], name
    assert replay.state() == {"last_stamp": "2015-01-01T04:50:00+00:00",
                              "last_file": "scada-20150101T0450Z.csv"}


def test_writes_are_atomic_readers_never_see_a_partial_file(replay, source_rows):
    seen: dict[str, int] = defaultdict(int)
    problems: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for path in replay.landing.glob("*.csv"):
                content = path.read_bytes()
                try:
                    rows = rows_of(content)
                    assert len(rows) == len(source_rows[stamp_of(path.name)])
                    assert all(len(row) == 9 for row in rows)
                except AssertionError:
                    problems.append(f"{path.name}: {content!r}")
                seen[path.name] += 1

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        replay.run("--max-stamps", "200", "--speed", "60000")
    finally:
        done.set()
        watcher.join()
    assert not problems
    assert len(replay.files()) == 200
    assert len(seen) > 100  # the watcher read files while the replay was writing them
    assert not replay.leftovers()


def test_resume_continues_without_duplicates_or_gaps(replay, source_rows):
    first = replay.run("--max-stamps", "25", "--speed", "0")
    assert "scada-20150101T0000Z.csv" in first
    replay.run("--max-stamps", "25", "--speed", "0")
    files = replay.files()
    assert len(files) == 50
    assert_consecutive_from_first_stamp(list(files))
    rows = sum(len(rows_of(content)) for content in files.values())
    assert rows == sum(len(source_rows[FIRST_STAMP + i * TEN_MINUTES]) for i in range(50))
    assert replay.state()["last_file"] == max(files)


@pytest.mark.slow
def test_kill_9_then_restart_leaves_no_gap_and_no_duplicate(replay, source_rows):
    running = replay.start("--speed", "6000")
    replay.wait_for_files(3)
    time.sleep(0.5)
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=10)
    assert running.returncode == -signal.SIGKILL
    before = replay.files()
    replay.run("--max-stamps", "20", "--speed", "0")
    after = replay.files()
    assert len(after) in (len(before) + 20, len(before) + 19)  # 19: the last file re-emitted
    assert_consecutive_from_first_stamp(list(after))
    assert all(after[name] == content for name, content in before.items())
    for name, content in after.items():
        assert rows_of(content) == source_rows[stamp_of(name)], name
    assert replay.state()["last_file"] == max(after)
    assert not replay.leftovers()


def test_sigterm_finishes_the_file_saves_state_and_exits_0(replay):
    running = replay.start("--speed", "6000")
    replay.wait_for_files(3)
    time.sleep(0.3)
    running.send_signal(signal.SIGTERM)
    output, _ = running.communicate(timeout=10)
    assert running.returncode == 0, output
    assert "run again to resume" in output
    files = replay.files()
    assert_consecutive_from_first_stamp(list(files))
    assert replay.state()["last_file"] == max(files)
    assert not replay.leftovers()


def test_a_file_renamed_before_the_state_update_is_re_emitted_byte_identical(replay):
    replay.run("--max-stamps", "5", "--speed", "0")
    before = replay.files()
    last = replay.landing / max(before)
    inode = last.stat().st_ino
    state = replay.state()
    # As if killed after renaming the 5th file but before saving the state:
    replay.state_file.write_text(json.dumps({**state, "last_stamp": "2015-01-01T00:30:00+00:00"}))
    replay.run("--max-stamps", "1", "--speed", "0")
    assert last.stat().st_ino != inode  # written again...
    assert replay.files() == before  # ...with the same name and bytes
    assert replay.state() == state


def test_reset_starts_over_from_the_first_stamp(replay):
    replay.run("--max-stamps", "5", "--speed", "0")
    before = replay.files()
    output = replay.run("--reset", "--max-stamps", "2", "--speed", "0")
    assert "from scada-20150101T0000Z.csv" in output
    assert replay.state()["last_file"] == "scada-20150101T0010Z.csv"
    assert replay.files() == before


def test_end_of_data_prints_a_message_and_exits_0(replay, tmp_path):
    short = tmp_path / "short.parquet"
    pq.write_table(pq.ParquetFile(SOURCE).read().slice(0, 10), short)  # stamps 00:00, 00:10, 00:20 (2 rows)
    replay.configure(source=str(short))
    assert "Replay finished" in replay.run("--speed", "0")
    files = replay.files()
    assert list(files) == ["scada-20150101T0000Z.csv", "scada-20150101T0010Z.csv", "scada-20150101T0020Z.csv"]
    assert len(rows_of(files["scada-20150101T0020Z.csv"])) == 2
    assert "Replay finished" in replay.run("--speed", "0")
    assert replay.files() == files
