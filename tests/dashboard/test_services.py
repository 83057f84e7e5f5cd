"""The Pipelines page's services: the Prefect API (answering or not) and MLflow metrics."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from turbine_monitor.dashboard.services import farm_wide_holdout, prefect_runs

DEPLOYMENTS = [{"id": "d-train", "name": "training"}, {"id": "d-infer", "name": "inference"}]
RUN = {
    "name": "brisk-owl",
    "state_name": "Completed",
    "start_time": "2026-12-03T05:00:00Z",
    "total_run_time": 12.34,
}


class FakePrefect(BaseHTTPRequestHandler):
    """Answers the two filters the page posts."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        answer = (
            DEPLOYMENTS
            if self.path.endswith("/deployments/filter")
            else [{**RUN, "name": f"run-of-{body['deployments']['id']['any_'][0]}"}]
        )
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def prefect_api() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), FakePrefect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api"
    server.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_last_runs_of_each_deployment(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    runs, status = prefect_runs()
    assert runs[["deployment", "flow_run", "state", "duration_s"]].values.tolist() == [
        ["training", "run-of-d-train", "Completed", 12.3],
        ["inference", "run-of-d-infer", "Completed", 12.3],
    ]
    assert status == f"From the Prefect API at {prefect_api}."


def test_a_prefect_api_that_does_not_answer_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    runs, status = prefect_runs()
    assert runs.empty
    assert status.startswith(f"Prefect API at {url} did not answer")


def test_champion_metrics_are_the_farm_wide_holdout_ones() -> None:
    metrics = {"holdout.model_mae_kw": 31.456, "holdout.model_mae_kw_T1": 30.0, "promotion_mae": 1.0}
    assert farm_wide_holdout(metrics, ["T1", "T2"]) == {"model_mae_kw": 31.46}
