"""The project's own Kedro commands (Kedro loads `cli` from here): `kedro run-fleet`,
`kedro synthetic-fleet`, `kedro dashboard`, `kedro dashboard-hash`."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(name="turbine-monitor")
def cli() -> None:
    """turbine-monitor's commands."""


@cli.command("run-fleet")
@click.option("--env", "-e", default=None, help="Kedro configuration environment (default: local).")
@click.option("--conf-source", default=None, help="Configuration folder (default: the project's conf/).")
def run_fleet(env: str | None, conf_source: str | None) -> None:
    """One round of the monitor over every farm: ingest new files, train each farm
    whose retraining gate is open (a Kedro run and an MLflow run per farm), score and
    update alerts. What the Prefect deployments do continuously."""
    from turbine_monitor.project import run_fleet_round

    run_fleet_round(conf_source, env)


@cli.command("synthetic-fleet")
@click.option("--farms", type=int, default=10, show_default=True, help="How many farms.")
@click.option("--days", type=int, default=365, show_default=True, help="Days of records per farm.")
@click.option("--turbines", type=int, default=4, show_default=True, help="Turbines per farm.")
@click.option("--format", "export_format", type=click.Choice(["la_haute_borne", "greenbyte"]),
              default="la_haute_borne", show_default=True, help="Export format of the files.")
@click.option("--start", default="2016-01-01", show_default=True, help="First day (UTC).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/02_synthetic"), show_default=True,
              help="Where the farms' asset tables and exports go.")
@click.option("--env", default="synthetic", show_default=True,
              help="Kedro environment whose farms.yml lists the synthetic farms (conf/<env>/farms.yml).")
def synthetic_fleet(farms: int, days: int, turbines: int, export_format: str, start: str, out: Path,
                    env: str) -> None:
    """Write a synthetic fleet built from the La Haute Borne data (each farm shifted in
    time, ids of its own; not real data) and the environment that runs it."""
    from turbine_monitor.project import PROJECT_ROOT
    from turbine_monitor.synthetic import write_farms_yml, write_synthetic_fleet

    entries = write_synthetic_fleet(out.resolve(), farms, days, start, export_format, turbines)
    farms_yml = PROJECT_ROOT / "conf" / env / "farms.yml"
    write_farms_yml(farms_yml, entries)
    click.echo(f"Wrote {farms} synthetic farms of {turbines} turbines ({days} days) under {out} and "
               f"{farms_yml.relative_to(PROJECT_ROOT)}. Run them: kedro run-fleet --env {env}")


@cli.command("dashboard")
@click.option("--host", default=None, help="Address to listen on (default: dashboard.yml, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: dashboard.yml, 8050).")
@click.option("--env", "-e", default=None, help="Kedro configuration environment (default: local).")
@click.option("--conf-source", default=None, help="Configuration folder (default: the project's conf/).")
def dashboard(host: str | None, port: int | None, env: str | None, conf_source: str | None) -> None:
    """The web dashboard on the warehouse the catalog names (Fleet, Turbine, Alerts,
    Losses, Pipelines). Bound to an address other than the loopback it needs users."""
    from turbine_monitor.dashboard.app import create_app
    from turbine_monitor.dashboard.auth import DashboardRefused

    try:
        app, config = create_app(conf_source, env, host, port)
    except DashboardRefused as refused:
        raise click.ClickException(str(refused)) from None
    click.echo(f"Dashboard at http://{config.host}:{config.port}/ (Ctrl-C stops it)")
    app.run(host=config.host, port=config.port, debug=False)


@cli.command("dashboard-hash")
@click.password_option("--password", help="The password to hash (asked when not given).")
def dashboard_hash(password: str) -> None:
    """Print a password hash for `dashboard_users` in conf/local/credentials.yml (or
    TURBINE_MONITOR_DASHBOARD_USERS)."""
    from werkzeug.security import generate_password_hash

    click.echo(generate_password_hash(password))
