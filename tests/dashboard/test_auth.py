"""Who may use the dashboard: the refusal to listen in the open without users, basic auth."""

from __future__ import annotations

import flask
import pytest
from click.testing import CliRunner
from werkzeug.security import generate_password_hash

from turbine_monitor.cli import cli
from turbine_monitor.dashboard.app import create_app
from turbine_monitor.dashboard.auth import USERS_VARIABLE, current_user, require_users, users_from
from turbine_monitor.sandbox import Sandbox

ALICE = f"alice:{generate_password_hash('s3cret')}"


@pytest.mark.parametrize("sandbox", ["duckdb"], indirect=True)  # sign-in is the same on both
def test_it_refuses_to_listen_on_every_address_without_users(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(USERS_VARIABLE, raising=False)
    result = CliRunner().invoke(cli, ["dashboard", "--host", "0.0.0.0", "--conf-source", str(sandbox.conf)])
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: The dashboard refuses to listen on 0.0.0.0 without authentication:"
    )
    assert "Traceback" not in result.output


def test_users_come_from_the_credentials_and_the_environment() -> None:
    users = users_from({"dashboard_users": {"bob": "hash-b"}}, {USERS_VARIABLE: f"{ALICE}, carol:hash-c"})
    assert sorted(users) == ["alice", "bob", "carol"]


def test_the_signed_in_user_acknowledges() -> None:
    server = flask.Flask(__name__)
    require_users(server, users_from({}, {USERS_VARIABLE: ALICE}))
    server.add_url_rule("/who", "who", current_user)
    client = server.test_client()
    assert client.get("/who").status_code == 401
    assert client.get("/who", auth=("alice", "wrong")).status_code == 401
    assert client.get("/who", auth=("alice", "s3cret")).text == "alice"


@pytest.mark.parametrize("sandbox", ["duckdb"], indirect=True)  # sign-in is the same on both
def test_the_app_requires_its_users_whatever_the_address(sandbox: Sandbox) -> None:
    app, config = create_app(str(sandbox.conf), environ={USERS_VARIABLE: ALICE})
    client = app.dash.server.test_client()
    assert config.host == "127.0.0.1"
    assert client.get("/").status_code == 401
    assert client.get("/alerts", auth=("alice", "s3cret")).status_code == 200
    assert client.get("/_dash-layout", auth=("alice", "s3cret")).status_code == 200


def test_a_password_is_checked_against_its_hash_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from turbine_monitor.dashboard import auth

    checked = []
    real_check = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda *args: checked.append(args) or real_check(*args))
    server = flask.Flask(__name__)
    require_users(server, users_from({}, {USERS_VARIABLE: ALICE}))
    server.add_url_rule("/who", "who", current_user)
    client = server.test_client()
    assert [client.get("/who", auth=("alice", "s3cret")).text for _ in range(3)] == ["alice"] * 3
    assert client.get("/who", auth=("alice", "wrong")).status_code == 401  # another password is checked
    assert client.get("/who", auth=("alice", "wrong")).status_code == 401  # and never remembered
    assert len(checked) == 3
