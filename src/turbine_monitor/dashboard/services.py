"""What the Pipelines page reads besides the warehouse: the last flow runs from the
Prefect API and each farm's champion from the MLflow registry. Each answers with a
DataFrame and a status line; a service that does not answer gives an empty frame and
says so, never an error page."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from turbine_monitor.project import load_config

#: How long the page waits for the Prefect API.
PREFECT_TIMEOUT_S = 2.0
#: The runs shown per deployment.
RUNS_PER_DEPLOYMENT = 5
RUN_COLUMNS = ["deployment", "flow_run", "state", "start_time", "duration_s"]
CHAMPION_COLUMNS = ["farm_id", "version", "model", "run_id"]


def prefect_api_url(conf_source: str | None = None, env: str | None = None) -> str:
    """PREFECT_API_URL, else the local server of prefect.yml."""
    if url := os.environ.get("PREFECT_API_URL"):
        return url.rstrip("/")
    server = load_config("prefect", conf_source, env)["prefect"]["server"]
    return f"http://{server['host']}:{server['port']}/api"


def deployment_names(conf_source: str | None = None, env: str | None = None) -> list[str]:
    """The deployments prefect.yml declares (training, inference)."""
    deployments = load_config("prefect", conf_source, env)["prefect"].get("deployments", {})
    return [entry["name"] for entry in deployments.values()] or ["training", "inference"]


def prefect_runs(conf_source: str | None = None, env: str | None = None) -> tuple[pd.DataFrame, str]:
    """The last runs of each deployment that started (state, start, duration), and where
    they came from."""
    import httpx

    url = prefect_api_url(conf_source, env)
    try:
        with httpx.Client(base_url=url, timeout=PREFECT_TIMEOUT_S) as client:
            deployments = client.post("/deployments/filter", json={}).raise_for_status().json()
            rows = [
                _run_row(deployment["name"], run)
                for deployment in deployments
                if deployment["name"] in deployment_names(conf_source, env)
                for run in client.post(
                    "/flow_runs/filter",
                    json={  # the runs that started (not those scheduled ahead), newest first
                        "deployments": {"id": {"any_": [deployment["id"]]}},
                        "flow_runs": {"state": {"type": {"not_any_": ["SCHEDULED"]}}},
                        "sort": "START_TIME_DESC",
                        "limit": RUNS_PER_DEPLOYMENT,
                    },
                )
                .raise_for_status()
                .json()
            ]
    except (httpx.HTTPError, ValueError) as error:
        return pd.DataFrame(
            columns=RUN_COLUMNS
        ), f"Prefect API at {url} did not answer ({type(error).__name__})."
    return pd.DataFrame(rows, columns=RUN_COLUMNS), f"From the Prefect API at {url}."


def _run_row(deployment: str, run: dict[str, Any]) -> dict[str, Any]:
    """One flow run as a table row."""
    return {
        "deployment": deployment,
        "flow_run": run["name"],
        "state": run.get("state_name"),
        "start_time": run.get("start_time") or run.get("expected_start_time"),
        "duration_s": round(run.get("total_run_time") or 0.0, 1),
    }


def mlflow_tracking_uri(conf_source: str | None = None, env: str | None = None) -> str:
    """MLFLOW_TRACKING_URI, else mlflow.yml's tracking store."""
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or load_config("mlflow", conf_source, env)["server"]["mlflow_tracking_uri"]
    )


def champions(
    farms: dict[str, list[str]], conf_source: str | None = None, env: str | None = None
) -> tuple[pd.DataFrame, str]:
    """Each farm's `champion` version with its run's farm-wide holdout metrics (`farms`:
    their turbines, whose per-turbine metrics are left out), one row per farm."""
    model_name = load_config("globals", conf_source, env)["model"]["name"]
    uri = mlflow_tracking_uri(conf_source, env)
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        rows, missing = [], []
        for farm, turbines in farms.items():
            name = f"{model_name}-{farm}"
            try:
                version = client.get_model_version_by_alias(name, "champion")
            except MlflowException:
                missing.append(farm)
                continue
            metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
            rows.append(
                {
                    "farm_id": farm,
                    "version": version.version,
                    **farm_wide_holdout(metrics, turbines),
                    "model": name,
                    "run_id": version.run_id,
                }
            )
    except Exception as error:  # noqa: BLE001 - any failure of the store is reported on the page
        return pd.DataFrame(columns=CHAMPION_COLUMNS), f"MLflow at {uri} could not be read: {error}"
    status = f"From MLflow at {uri}." + (f" No champion yet: {', '.join(missing)}." if missing else "")
    return pd.DataFrame(rows, columns=None if rows else CHAMPION_COLUMNS), status


def farm_wide_holdout(metrics: dict[str, float], turbines: list[str]) -> dict[str, float]:
    """The `holdout.*` metrics that are not one turbine's (the model's first), without the
    prefix, rounded."""
    return {
        metric.removeprefix("holdout."): round(value, 2)
        for metric, value in sorted(
            metrics.items(), key=lambda item: ("holdout.model_" not in item[0], item[0])
        )
        if metric.startswith("holdout") and not any(metric.endswith(f"_{turbine}") for turbine in turbines)
    }
