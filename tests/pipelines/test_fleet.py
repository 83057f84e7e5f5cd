"""A fleet end to end, on real warehouses and MLflow registries, with synthetic farms
(`turbine_monitor.synthetic`): a farm onboarded by configuration alone, a model per farm
with its own aliases, one farm's failures isolated from the others, farms of 1 and 30
turbines, work partitioned by farm, and run-by-run alert detection per farm. Each test
trains several farms: the slow tier (`make test`, not `make check`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import FAST_TRAINING, START, Fleet
from turbine_monitor.datasets.warehouse import DuckDBQueryDataset
from turbine_monitor.project import load_config, run_fleet_round
from turbine_monitor.synthetic import farm_id
from turbine_monitor.values import FarmFailures

pytestmark = pytest.mark.slow


@pytest.fixture
def registry(tmp_path, monkeypatch) -> MlflowClient:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowClient(uri)


def aliases(client: MlflowClient, farm: str) -> dict[str, str]:
    model = client.get_registered_model(f"turbine-power-nbm-{farm}")
    return {alias: str(version) for alias, version in model.aliases.items()}


def test_a_farm_is_onboarded_by_configuration_alone_with_a_model_of_its_own(tmp_path, registry):
    """Farm 1 (La Haute Borne format) runs; farm 2 (Greenbyte files) is added to
    farms.yml and its files dropped in its landing folder: the next round ingests,
    trains and scores it, farm 1's model untouched."""
    fleet = Fleet(tmp_path, [(1, 4, "la_haute_borne"), (2, 4, "greenbyte")])
    one, two = farm_id(1), farm_id(2)
    local_farms = fleet.sandbox.conf / "local" / "farms.yml"
    local_farms.write_text(yaml.safe_dump({"farms": {one: fleet.entries[one]}}))
    fleet.deliver(one, 35)
    assert fleet.round() == [one]

    fleet.sandbox.set_farms(fleet.entries)  # onboarding: configuration ...
    fleet.deliver(two, 35)                  # ... and files
    assert fleet.round() == [two]           # farm 1's gate is closed: nothing new for it
    assert aliases(registry, one) == {"champion": "1", "challenger": "1"}
    assert aliases(registry, two) == {"champion": "1", "challenger": "1"}
    assert fleet.sql("SELECT farm_id, count(*) FROM turbines GROUP BY ALL ORDER BY ALL") == [
        (one, 4), (two, 4)]
    assert fleet.sql("SELECT t.farm_id, count(*) = count(p.ts) FROM scada s "
                     "JOIN turbines t USING (turbine_id) LEFT JOIN predictions p USING (turbine_id, ts) "
                     "GROUP BY ALL ORDER BY ALL") == [
        (one, True), (two, True)]
    assert fleet.sql("SELECT DISTINCT farm_id FROM ingested_files ORDER BY ALL") == [(one,), (two,)]
    assert fleet.sql("SELECT count(*) FROM scoring_queue") == [(0,)]


def test_each_farm_has_its_own_registry_lifecycle(tmp_path, registry):
    fleet = Fleet(tmp_path, [(1, 4, "la_haute_borne"), (2, 4, "la_haute_borne")])
    one, two = farm_id(1), farm_id(2)
    for farm in (one, two):
        fleet.deliver(farm, 33)
    assert fleet.round() == [one, two]
    fleet.deliver(one, 35)  # two more days for farm 1 only: its retraining gate opens
    assert fleet.round() == [one]
    assert len(registry.search_model_versions(f"name = 'turbine-power-nbm-{one}'")) == 2
    assert aliases(registry, one)["challenger"] == "2"
    assert aliases(registry, two) == {"champion": "1", "challenger": "1"}
    run = registry.get_run(registry.get_model_version(f"turbine-power-nbm-{one}", "2").run_id)
    assert run.data.tags["farm_id"] == one and run.data.tags["champion_version_before"] == "1"


def test_farms_of_one_and_of_thirty_turbines_are_trained_and_scored(tmp_path, registry):
    fleet = Fleet(tmp_path, [(1, 1, "la_haute_borne"), (2, 30, "greenbyte")], days=34)
    for farm in fleet.entries:
        fleet.deliver(farm, 34)
    assert fleet.round() == [farm_id(1), farm_id(2)]
    assert fleet.sql("SELECT t.farm_id, count(DISTINCT p.turbine_id), count(p.expected_power_kw) > 0 "
                     "FROM predictions p JOIN turbines t USING (turbine_id) GROUP BY ALL ORDER BY ALL") == [
        (farm_id(1), 1, True), (farm_id(2), 30, True)]
    assert fleet.sql("SELECT count(*) FROM scoring_queue") == [(0,)]


def test_work_is_partitioned_by_farm_and_produced_one_partition_at_a_time(tmp_path, registry, monkeypatch):
    """With `partitions.max_rows: 0` every farm is a partition of its own: each read
    holds one farm's rows, and each partition's predictions are saved before the next
    partition is read, so a run holds one farm's rows at a time. With the shipped budget,
    a live run's few new records of every farm are one partition."""
    fleet = Fleet(tmp_path, [(1, 4, "la_haute_borne"), (2, 4, "la_haute_borne"), (3, 4, "greenbyte")],
                  days=33)
    farms = list(fleet.entries)
    for farm in farms:
        fleet.deliver(farm, 31)
    fleet.round()
    events: list[tuple[str, tuple]] = []
    read, insert = DuckDBQueryDataset._read, DuckDBQueryDataset._insert

    def spy_read(self, **arguments):
        if "farms" in arguments:
            events.append(("read", tuple(arguments["farms"])))
        return read(self, **arguments)

    def spy_insert(self, data):
        if "expected_power_kw" in data:  # predictions
            saved = data["turbine_id"].str[3:6].astype(int).map(farm_id).unique()
            events.append(("save", tuple(sorted(saved))))
        return insert(self, data)

    monkeypatch.setattr(DuckDBQueryDataset, "_read", spy_read)
    monkeypatch.setattr(DuckDBQueryDataset, "_insert", spy_insert)
    shipped = fleet.sandbox.globals()
    (fleet.sandbox.conf / "local" / "globals.yml").write_text(
        yaml.safe_dump(shipped | {"partitions": {"max_rows": 0}}))
    for farm in farms:
        fleet.deliver(farm, 32)
    fleet.sandbox.run("inference")
    assert events[:6] == [(kind, (farm,)) for farm in farms for kind in ("read", "save")]  # scoring
    assert all(len(partition) == 1 for _, partition in events)

    events.clear()
    (fleet.sandbox.conf / "local" / "globals.yml").write_text(yaml.safe_dump(shipped))
    for farm in farms:
        fleet.deliver(farm, 33)
    fleet.sandbox.run("inference")
    assert load_config("globals", fleet.sandbox.conf)["partitions"]["max_rows"] > 0
    assert events[:2] == [("read", tuple(farms)), ("save", tuple(farms))]  # one partition of three farms


def test_one_farms_failures_leave_the_other_farms_work_as_without_it(tmp_path, registry):
    """Farm 2's champion stops loading and hostile files land in its folder: the run
    ends failed naming farm 2, and farm 1's rows, predictions and alerts are exactly those
    of a fleet without farm 2; farm 2's new rows wait in the queue."""
    alone = Fleet(tmp_path / "alone", [(1, 4, "la_haute_borne")])
    both = Fleet(tmp_path / "both", [(1, 4, "la_haute_borne"), (2, 4, "greenbyte")])
    one, two = farm_id(1), farm_id(2)
    for fleet in (alone, both):
        for farm in fleet.entries:
            fleet.deliver(farm, 33)
        fleet.round()

    source = registry.get_model_version_download_uri(f"turbine-power-nbm-{two}", "1")
    # Farm 2's champion cannot load any more: its artifacts and scoring's local copy gone.
    shutil.rmtree(source.removeprefix("file://"))
    shutil.rmtree(Path(both.sandbox.globals()["paths"]["model_cache"]))
    hostile = Path(both.entries[two]["landing"])
    (hostile / "garbage.csv").write_bytes(b"\xff\xfe\x00 not a csv")
    (hostile / "wrong.csv").write_text("a,b\n1,2\n")
    for fleet in (alone, both):
        for farm in fleet.entries:
            fleet.deliver(farm, 36)
    alone.sandbox.run("inference")
    with pytest.raises(FarmFailures, match=f"farm '{two}'") as failed:
        both.sandbox.run("inference")
    assert list(failed.value.failures) == [two]

    def farm_one(fleet: Fleet, table: str, excluded: str) -> pd.DataFrame:
        rows = fleet.sandbox.sql(f"SELECT x.* EXCLUDE ({excluded}) FROM {table} x "
                                 f"JOIN turbines t USING (turbine_id) WHERE t.farm_id = '{one}' ORDER BY ALL")
        return pd.DataFrame(rows)

    for table, excluded in (("scada", "ingested_at"), ("predictions", "scored_at"),
                            ("alerts", "opened_at, updated_at")):
        pd.testing.assert_frame_equal(farm_one(both, table, excluded), farm_one(alone, table, excluded))
    assert both.sql("SELECT count(*) > 0 FROM scoring_queue q JOIN turbines t USING (turbine_id) "
                    f"WHERE t.farm_id = '{two}'") == [(True,)]
    assert both.sql(f"SELECT count(*) FROM ingested_files WHERE farm_id = '{two}' "
                    "AND status = 'rejected'") == [(2,)]


def test_alerts_recomputed_run_by_run_equal_detection_over_all_predictions_per_farm(tmp_path, registry):
    """Two farms delivered two days at a time, farm 2's first turbine derated by 15 % for
    a week: the episodes stored run by run are, per farm, those the detector finds over
    all the farm's predictions at once."""
    import mlflow

    from turbine_monitor.detection import detect_alerts

    fleet = Fleet(tmp_path, [(1, 4, "la_haute_borne"), (2, 4, "la_haute_borne")], days=60)
    two = farm_id(2)
    derated = Path(tmp_path / "staging" / two / "landing")
    for path in derated.glob("*.csv"):
        export = pd.read_csv(path)
        stamps = pd.to_datetime(export["Date_time"], utc=True)
        week = (export["Wind_turbine_name"] == "SYN002-T01") & stamps.between(
            START + pd.Timedelta(days=40), START + pd.Timedelta(days=47))
        export.loc[week, "P_avg"] *= 0.85
        export.to_csv(path, index=False)
    settings = fleet.sandbox.globals() | {"alerts": fleet.sandbox.load("globals")["alerts"] | {
        "window_evidence_records": 300, "baseline_days": 3}}
    (fleet.sandbox.conf / "local" / "globals.yml").write_text(yaml.safe_dump(settings))
    short = {"inference": {"alerts": {"baseline_min_days": 2}}}
    for farm in fleet.entries:
        fleet.deliver(farm, 32)
    run_fleet_round(fleet.sandbox.conf, runtime_params={**FAST_TRAINING, **short})
    for day in range(34, 61, 2):
        for farm in fleet.entries:
            fleet.deliver(farm, day)
        fleet.sandbox.run("inference", short)

    shipped = load_config("parameters", fleet.sandbox.conf)["inference"]["alerts"]
    params = shipped | short["inference"]["alerts"]
    columns = ["turbine_id", "kind", "start_ts", "end_ts", "records", "operating_records"]
    mlflow.set_tracking_uri(registry.tracking_uri)
    found = {}
    for farm in fleet.entries:
        champion = mlflow.pyfunc.load_model(f"models:/turbine-power-nbm-{farm}@champion")
        calibration = champion.unwrap_python_model().power_model.calibration
        predictions = pd.DataFrame(fleet.sql(
            "SELECT turbine_id, ts, power_kw, wind_speed_ms, expected_power_kw FROM predictions "
            f"JOIN turbines USING (turbine_id) WHERE farm_id = '{farm}'"),
            columns=["turbine_id", "ts", "power_kw", "wind_speed_ms", "expected_power_kw"])
        whole = detect_alerts(predictions, calibration, params)
        selected = ", ".join(f"a.{c}" for c in columns)
        stored = pd.DataFrame(fleet.sql(f"SELECT {selected} FROM alerts a JOIN turbines USING (turbine_id) "
                                        f"WHERE farm_id = '{farm}'"), columns=columns)

        def episodes(table: pd.DataFrame) -> list[tuple]:
            return sorted((t, k, pd.Timestamp(s), None if pd.isna(e) else pd.Timestamp(e), int(r), int(o))
                          for t, k, s, e, r, o in table[columns].itertuples(index=False))

        assert episodes(stored) == episodes(whole)
        found[farm] = episodes(whole)
    assert ("SYN002-T01", "underperformance") in {(t, k) for t, k, *_ in found[two]}
