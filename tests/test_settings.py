"""Project settings: a `conf/local` file overrides only the keys it sets (Prefect, the
replay), or replaces the top-level keys it sets (the fleet, as Kedro does by default)."""

from __future__ import annotations

import yaml

from turbine_monitor.orchestration.flows import prefect_config
from turbine_monitor.project import load_config
from turbine_monitor.sandbox import Sandbox


def test_a_local_prefect_yml_overrides_one_deployment_key_and_keeps_the_rest(workspace: Sandbox):
    base = prefect_config(str(workspace.conf))
    (workspace.conf / "local" / "prefect.yml").write_text(yaml.safe_dump({"prefect": {
        "deployments": {"inference": {"interval_seconds": 5},
                        "training": {"parameters": {"runtime_params": {"training": {"window_days": 30}}}}},
        "worker": {"query_seconds": 1}}}))
    merged = prefect_config(str(workspace.conf))

    assert merged["deployments"]["inference"] == {**base["deployments"]["inference"], "interval_seconds": 5}
    assert merged["deployments"]["training"] == {**base["deployments"]["training"], "parameters": {
        "env": "local", "runtime_params": {"training": {"window_days": 30}}}}
    assert merged["worker"] == {**base["worker"], "query_seconds": 1}
    assert {k: v for k, v in merged.items() if k not in ("deployments", "worker")} == {
        k: v for k, v in base.items() if k not in ("deployments", "worker")}


def test_a_local_replay_yml_overrides_only_the_speed(workspace: Sandbox):
    (workspace.conf / "local" / "replay.yml").write_text(yaml.safe_dump({"replay": {"speed": 60}}))
    replay = load_config("replay", workspace.conf)["replay"]
    assert replay["speed"] == 60
    assert replay["landing"] == str(workspace.landing)  # the rest still comes from base
    assert replay["state_file"] == "data/replay_state.json"


def test_a_local_farms_yml_replaces_the_fleet_and_keeps_the_formats(workspace: Sandbox):
    """Kedro's default for the globals: a key an environment sets replaces base's whole."""
    farm = {"assets": "a.csv", "format": "greenbyte", "landing": "landing/kelmarsh"}
    (workspace.conf / "local" / "farms.yml").write_text(yaml.safe_dump({"farms": {"kelmarsh": farm}}))
    merged = load_config("globals", workspace.conf)
    assert merged["farms"] == {"kelmarsh": farm}
    assert set(merged["formats"]) == {"la_haute_borne", "greenbyte"}
