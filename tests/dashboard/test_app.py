"""The app on the hand-built warehouse: its pages and the reads its figures share."""

from __future__ import annotations

import pandas as pd
import pytest

from turbine_monitor.dashboard.app import SharedReads, create_app, only
from turbine_monitor.dashboard.auth import USERS_VARIABLE
from turbine_monitor.sandbox import Sandbox


def test_the_pages_are_served_on_the_loopback_without_sign_in(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(USERS_VARIABLE, raising=False)
    app, config = create_app(str(sandbox.conf))
    client = app.dash.server.test_client()
    assert (config.host, config.port) == ("127.0.0.1", 8050)
    for path in ("/", "/turbine", "/alerts", "/losses", "/pipelines"):
        assert client.get(path).status_code == 200
    assert client.get("/fleet").headers["Location"] == "/"


def test_the_figures_of_a_page_share_one_read() -> None:
    reads = []
    shared = SharedReads(ttl_s=60)
    assert shared(("fleet",), lambda: reads.append(1) or "page") == "page"
    assert shared(("fleet",), lambda: reads.append(2) or "again") == "page"
    assert reads == [1]
    assert SharedReads(ttl_s=0)(("fleet",), lambda: "fresh") == "fresh"


def test_a_choice_of_every_offered_value_filters_nothing() -> None:
    alerts = pd.DataFrame(
        {"turbine_id": ["T1", "T2", "T9"], "kind": ["stopped", "stopped", "underperformance"]}
    )
    offered = {"turbine_id": ["T1", "T2"], "kind": ["underperformance", "stopped"]}
    assert len(only(alerts, {"turbine_id": ["T1", "T2"], "kind": None}, offered)) == 3  # T9 came later
    assert only(alerts, {"turbine_id": ["T2"], "kind": ["stopped"]}, offered)["turbine_id"].tolist() == ["T2"]
