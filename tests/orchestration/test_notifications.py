"""Alert notifications (orchestration/notifications.py): where the webhook URL comes from,
which alerts notify, the message body the shipped payload template renders; and end to
end, a real Prefect server with the automation that registering the deployments creates,
a local HTTP receiver as the webhook and the inference flow: one message per alert opened
live, none for a backlog of episodes already closed."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import uuid4

import pandas as pd
import pytest
import yaml
from prefect import get_client
from prefect.server.events.actions import CallWebhook
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.utilities.user_templates import render_user_template_sync
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.conftest import HEADER
from tests.orchestration.conftest import wait_for
from turbine_monitor.orchestration import stack
from turbine_monitor.orchestration.flows import (
    ALERT_OPENED,
    alert_opened_event,
    dashboard_alerts_url,
    inference_flow,
    opened_live,
    prefect_config,
)
from turbine_monitor.orchestration.notifications import register_notifications, webhook_url
from turbine_monitor.sandbox import Sandbox

URL_ENV = "TURBINE_MONITOR_ALERT_WEBHOOK_URL"
NOTIFICATIONS = "turbine_monitor.orchestration.notifications"


def test_the_webhook_url_comes_from_the_environment_else_the_credentials(workspace, monkeypatch):
    config = prefect_config(str(workspace.conf))["notifications"]
    monkeypatch.delenv(URL_ENV, raising=False)
    assert webhook_url(config, str(workspace.conf)) is None
    (workspace.conf / "local" / "credentials.yml").write_text(yaml.safe_dump(
        {"alert_webhook_url": "https://hooks.example/from-credentials"}))
    assert webhook_url(config, str(workspace.conf)) == "https://hooks.example/from-credentials"
    monkeypatch.setenv(URL_ENV, "https://hooks.example/from-env")
    assert webhook_url(config, str(workspace.conf)) == "https://hooks.example/from-env"


def test_only_alerts_first_stored_by_the_run_and_still_open_notify():
    since = pd.Timestamp("2026-01-01 12:00", tz="UTC")
    alerts = pd.DataFrame({
        "turbine_id": ["A", "B", "C", "D"],
        "kind": ["stopped"] * 4,
        "start_ts": pd.Timestamp("2014-02-01", tz="UTC"),
        "end_ts": [pd.NaT, pd.Timestamp("2014-02-02", tz="UTC"), pd.NaT, pd.NaT],
        "opened_at": since + pd.to_timedelta([0, 1, -1, 2], unit="s"),
    })
    # B closed (a backlog's episode), C stored by an earlier run.
    assert opened_live(alerts, since)["turbine_id"].tolist() == ["A", "D"]


def test_the_shipped_payload_template_renders_the_alert_as_json():
    """As Prefect's server renders a CallWebhook action's payload for an event."""
    alert = {"turbine_id": "R80711", "farm_id": "la-haute-borne", "kind": "underperformance",
             "start_ts": "2015-03-02T10:00:00.000Z", "end_ts": None, "deficit_at_open": 0.0712,
             "channel": "peer", "energy_lost_kwh": 410.5}
    event = alert_opened_event(alert, dashboard_alerts_url())
    assert event["event"] == ALERT_OPENED
    assert event["resource"]["prefect.resource.id"] == "turbine-monitor.turbine.R80711"
    received = ReceivedEvent(occurred=datetime.now(UTC), id=uuid4(), **event)
    action = CallWebhook(block_document_id=uuid4(),  # validates the template as the server does
                         payload=prefect_config()["notifications"]["payload_template"])
    body = json.loads(render_user_template_sync(action.payload, {"event": received}))
    assert body == {
        "text": "Alert opened: underperformance on turbine R80711 (la-haute-borne) since "
                "2015-03-02T10:00:00.000Z, deficit 7.1 %. http://127.0.0.1:8050/alerts",
        "farm": "la-haute-borne", "turbine": "R80711", "kind": "underperformance",
        "start": "2015-03-02T10:00:00.000Z", "deficit_pct": 7.1, "channel": "peer",
        "energy_lost_kwh": 410.5, "dashboard": "http://127.0.0.1:8050/alerts"}


# End to end ------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """A local webhook: records the body of every request."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        super().__init__(("127.0.0.1", 0), ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        """Silent."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api_url(tmp_path) -> Iterator[str]:
    """A Prefect server of the test's own (its event services, triggers and actions, on
    by default)."""
    home = tmp_path / "prefect-home"
    with stack.prefect_server(port=stack.free_port(), home=home, log_file=home / "server.log") as server, \
            temporary_settings({PREFECT_API_URL: server.api_url}):
        yield server.api_url


def r80711(start: datetime, powers: list[float]) -> str:
    """Records of R80711 at 12 m/s, one per 10 minutes from `start`, producing `powers` (kW)."""
    return "".join(f"R80711,{(start + timedelta(minutes=10 * i)).isoformat()},{90.0 if p == 0 else 2.0},"
                   f"{p},12.0,0.0,5.0,180.0,180.0\n" for i, p in enumerate(powers))


def automations(name: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_automations_by_name(name)


def off_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == NOTIFICATIONS and "are off" in r.getMessage()]


@pytest.mark.slow
def test_one_message_per_alert_opened_live_and_none_for_a_closed_backlog(
        api_url, champion_workspace: Sandbox, receiver: Receiver, monkeypatch, caplog):
    ws, conf = champion_workspace, str(champion_workspace.conf)
    name = prefect_config(conf)["notifications"]["automation_name"]
    caplog.set_level(logging.INFO, logger=NOTIFICATIONS)

    # No webhook anywhere: no automation, and one line says so.
    monkeypatch.delenv(URL_ENV, raising=False)
    stack.register_deployments(conf_source=conf)
    assert automations(name) == []
    (off,) = off_lines(caplog)
    assert URL_ENV in off and "credentials.yml" in off

    # The webhook in the environment: registering (twice) leaves one automation.
    monkeypatch.setenv(URL_ENV, receiver.url)
    stack.register_deployments(conf_source=conf)
    stack.register_deployments(conf_source=conf)
    (automation,) = automations(name)
    assert automation.trigger.expect == {ALERT_OPENED}

    # January as the bootstrap (plain Kedro, no Prefect): its alerts notify nobody.
    ws.run("inference")

    # A backlog: a stop that has already ended when it lands.
    start = datetime(2014, 2, 1, tzinfo=UTC)
    (ws.landing / "backlog.csv").write_text(HEADER + r80711(start, [0.0] * 6 + [2050.0] * 6))
    state = inference_flow(conf_source=conf, return_state=True)
    assert state.is_completed(), state.message
    assert ws.sql("SELECT kind, end_ts IS NOT NULL FROM alerts WHERE start_ts >= '2014-02-01'") == [
        ("stopped", True)]

    # Live: a stop that is still going.
    (ws.landing / "live.csv").write_text(HEADER + r80711(start + timedelta(hours=2), [0.0] * 4))
    state = inference_flow(conf_source=conf, return_state=True)
    assert state.is_completed(), state.message
    assert ws.sql("SELECT kind FROM alerts WHERE end_ts IS NULL AND start_ts >= '2014-02-01'") == [
        ("stopped",)]

    wait_for(lambda: receiver.bodies, "the webhook's message", timeout_s=60)
    # A run with nothing new opens nothing; a wrongly sent message has time to arrive.
    assert inference_flow(conf_source=conf, return_state=True).is_completed()
    time.sleep(5)
    assert len(receiver.bodies) == 1, receiver.bodies
    (message,) = receiver.bodies
    fields = ("farm", "turbine", "kind", "start", "deficit_pct", "dashboard")
    assert {key: message[key] for key in fields} == {
        "farm": "la-haute-borne", "turbine": "R80711", "kind": "stopped", "start": "2014-02-01T02:00:00.000Z",
        "deficit_pct": None, "dashboard": "http://127.0.0.1:8050/alerts"}
    assert message["text"].startswith("Alert opened: stopped on turbine R80711 (la-haute-borne) since ")

    # Notifications disabled: the automation is deleted, one line says so.
    caplog.clear()
    (ws.conf / "local" / "prefect.yml").write_text(yaml.safe_dump({"prefect": {"notifications": {
        "enabled": False}}}))
    assert register_notifications(conf) is None
    assert automations(name) == []
    assert len(off_lines(caplog)) == 1
