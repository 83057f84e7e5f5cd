"""Who may use the dashboard: HTTP basic auth against werkzeug password hashes.

Users (name -> hash, made with `kedro dashboard-hash`) come from `dashboard_users` in
the Kedro credentials (conf/local/credentials.yml, never committed) or from the
environment variable TURBINE_MONITOR_DASHBOARD_USERS ("alice:<hash>,bob:<hash>").
When users are configured every request needs one of them, whatever the address; bound
to an address other than the loopback without users, the dashboard does not start.
"""

from __future__ import annotations

import getpass
import hashlib
import os

import flask
from werkzeug.security import check_password_hash

USERS_VARIABLE = "TURBINE_MONITOR_DASHBOARD_USERS"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class DashboardRefused(Exception):
    """The dashboard must not start as configured (the message says why)."""


def users_from(credentials: dict, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The configured users: the credentials' `dashboard_users`, then the environment's."""
    users = dict(credentials.get("dashboard_users") or {})
    listed = (os.environ if environ is None else environ).get(USERS_VARIABLE, "")
    for entry in filter(None, (part.strip() for part in listed.split(","))):
        name, _, password_hash = entry.partition(":")
        users[name] = password_hash
    return users


def check_binding(host: str, users: dict[str, str]) -> None:
    """Refuse an address other than the loopback without users."""
    if host not in LOOPBACK and not users:
        raise DashboardRefused(
            f"The dashboard refuses to listen on {host} without authentication: set `dashboard_users` in "
            f"conf/local/credentials.yml or {USERS_VARIABLE} (hashes from `kedro dashboard-hash`), "
            "or bind it to 127.0.0.1."
        )


def require_users(server: flask.Flask, users: dict[str, str]) -> None:
    """Make every request of `server` sign in as one of `users` (none: no sign-in). A
    password hash takes ~80 ms to check and a page makes several requests per refresh, so
    the credentials once verified are remembered (as a digest) for the life of the process."""
    if not users:
        return
    verified: set[str] = set()

    @server.before_request
    def _sign_in() -> flask.Response | None:
        given = flask.request.authorization
        if given and given.username in users:
            digest = hashlib.sha256(
                f"{given.username}\0{given.password or ''}\0{users[given.username]}".encode()).hexdigest()
            if digest in verified or check_password_hash(users[given.username], given.password or ""):
                verified.add(digest)
                flask.g.dashboard_user = given.username
                return None
        return flask.Response(
            "Sign in to the turbine-monitor dashboard.",
            401,
            {"WWW-Authenticate": 'Basic realm="turbine-monitor"'},
        )


def current_user() -> str:
    """The signed-in user of this request, else the user running the dashboard."""
    return (
        flask.g.get("dashboard_user")
        if flask.has_request_context() and "dashboard_user" in flask.g
        else getpass.getuser()
    )
