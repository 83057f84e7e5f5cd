"""The dashboard in a real browser: `kedro dashboard` on a warehouse built from the real
La Haute Borne data, driven by Playwright in Debian's headless Chromium (Playwright
cannot download its own browsers here). Each page's screenshot goes to
build/screenshots/ (git-ignored)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import FAST_TRAINING, PROJECT_ROOT, RAW_DIR
from tests.orchestration.conftest import wait_for
from turbine_monitor.orchestration.stack import free_port, stop_group
from turbine_monitor.sandbox import Sandbox

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRE_BROWSER = os.environ.get("TURBINE_MONITOR_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true"
SCREENSHOTS = PROJECT_ROOT / "build" / "screenshots"
PAGES = {"fleet": "/", "turbine": "/turbine", "alerts": "/alerts", "losses": "/losses",
         "pipelines": "/pipelines"}
# What each page shows once its data is in.
SHOWN = {"fleet": "#fleet_table_grid .ag-row", "turbine": "#power_curve .js-plotly-plot",
         "alerts": "#alerts_table_grid .ag-row", "losses": "#waterfall_graph .js-plotly-plot",
         "pipelines": "#champions_table_grid .ag-row"}
STOPPED_TURBINE = "R80711"
# 2015-01-02 is windy (9-12 m/s from 04:00): the turbine's power set to 0 from then on is a stop.
STOP_FROM = pd.Timestamp("2015-01-02 04:00", tz="UTC")
REFRESH_SECONDS = 2


def deliver_2015(sandbox: Sandbox, start: str, end: str) -> None:
    """The real 2015 records with `start <= ts < end` as an export in the landing folder,
    with STOPPED_TURBINE's power at 0 from STOP_FROM on."""
    records = pd.read_parquet(RAW_DIR / "la-haute-borne-scada-2015.parquet")
    ts = pd.to_datetime(records["Date_time"], utc=True, format="ISO8601")
    records = records[(ts >= pd.Timestamp(start, tz="UTC")) & (ts < pd.Timestamp(end, tz="UTC"))].copy()
    stopped = (records["Wind_turbine_name"] == STOPPED_TURBINE) & (ts.loc[records.index] >= STOP_FROM)
    records.loc[stopped, "P_avg"] = "0"
    records.to_csv(sandbox.landing / f"{start[:13]}.csv", index=False)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    """La Haute Borne 2014 ingested, a champion trained and everything scored, reported,
    then 2015-01-01 00:00 to 2015-01-02 12:00 delivered and run: R80711 has stopped."""
    sandbox = Sandbox.create(tmp_path_factory.mktemp("browser") / "ws")
    (sandbox.conf / "local" / "dashboard.yml").write_text(
        yaml.safe_dump({"dashboard": {"refresh_seconds": REFRESH_SECONDS}}))
    sandbox.run("__default__", runtime_params=FAST_TRAINING)
    deliver_2015(sandbox, "2015-01-01T00", "2015-01-02T12")
    sandbox.run("inference")
    return sandbox


@pytest.fixture(scope="module")
def dashboard(warehouse: Sandbox) -> Iterator[str]:
    """`kedro dashboard` on the warehouse's configuration; its URL."""
    if not Path(CHROMIUM).exists():
        if REQUIRE_BROWSER:
            pytest.fail("Chromium is missing: `apt-get install chromium` (.ci/run does).")
        pytest.skip("Chromium is missing: `apt-get install chromium`.")
    port = free_port()
    env = dict(os.environ)  # the tests' MLflow store (tests/conftest.py), where the champion is
    env.pop("PREFECT_API_URL", None)  # no Prefect server: the Pipelines page says so
    command = [sys.executable, "-m", "kedro", "dashboard", "--conf-source", str(warehouse.conf),
               "--port", str(port)]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url) or process.poll() is not None, "the dashboard to answer", timeout_s=90)
        assert process.poll() is None, "the dashboard exited"
        yield url
    finally:
        stop_group(process)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, dashboard: str) -> Iterator[object]:
    """A new page of the dashboard whose console errors and uncaught exceptions are kept
    in `page.errors`."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=dashboard)
    yield watched(context.new_page())
    context.close()


def watched(page):
    """`page`, keeping its console errors and uncaught exceptions in `page.errors`."""
    page.errors = []
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    return page


def grid_rows(page, grid_id: str) -> list[dict]:
    """The rows an AG Grid of the page holds, once it holds any."""
    script = f"""async () => {{
        const api = await dash_ag_grid.getApiAsync("{grid_id}");
        const rows = [];
        api.forEachNodeAfterFilterAndSort(node => rows.push(node.data));
        return rows;
    }}"""
    return wait_for(lambda: page.evaluate(script), f"rows in {grid_id}", timeout_s=30)


def open_page(page, name: str) -> None:
    page.goto(PAGES[name])
    page.wait_for_load_state("networkidle")


def test_every_page_loads_without_console_errors(page) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, shown in SHOWN.items():
        open_page(page, name)
        try:
            page.wait_for_selector(shown, timeout=30_000)
            page.wait_for_load_state("networkidle")
        finally:
            page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
        assert page.errors == [], f"{name}: {page.errors}"


def expected_states(warehouse: Sandbox, stale_after_minutes: int) -> dict[str, str]:
    """Each turbine's state as the warehouse implies it (conf/base/dashboard.yml)."""
    return dict(warehouse.sql(f"""
        WITH last AS (SELECT t.turbine_id, max(s.ts) AS last_ts FROM turbines t
                      LEFT JOIN scada s USING (turbine_id) GROUP BY t.turbine_id),
             open AS (SELECT turbine_id, list(kind) AS kinds FROM alerts WHERE end_ts IS NULL GROUP BY ALL)
        SELECT l.turbine_id,
               CASE WHEN list_contains(o.kinds, 'stopped') THEN 'stopped'
                    WHEN list_contains(o.kinds, 'underperformance') THEN 'underperforming'
                    WHEN l.last_ts IS NULL OR l.last_ts < (SELECT max(last_ts) FROM last)
                         - INTERVAL {stale_after_minutes} MINUTE THEN 'no recent data'
                    ELSE 'producing' END
        FROM last l LEFT JOIN open o USING (turbine_id)"""))


def test_the_fleet_page_lists_every_turbine_in_the_state_the_warehouse_implies(page, warehouse) -> None:
    open_page(page, "fleet")
    shown = {row["turbine_id"]: row["state"] for row in grid_rows(page, "fleet_table_grid")}
    states = expected_states(warehouse, warehouse.load("dashboard")["dashboard"]["stale_after_minutes"])
    assert shown == states
    assert states[STOPPED_TURBINE] == "stopped"
    attention = grid_rows(page, "attention_table_grid")
    assert STOPPED_TURBINE in {row["turbine_id"] for row in attention}
    assert page.locator("#fleet_table_grid .ag-row", has_text=STOPPED_TURBINE).first.is_visible()


def open_stop(warehouse: Sandbox) -> tuple:
    rows = warehouse.sql(f"""SELECT start_ts, records FROM alerts WHERE turbine_id = '{STOPPED_TURBINE}'
                             AND kind = 'stopped' AND end_ts IS NULL""")
    assert len(rows) == 1, rows
    return rows[0]


def alert_row(page) -> dict:
    rows = [row for row in grid_rows(page, "alerts_table_grid")
            if row["turbine_id"] == STOPPED_TURBINE and row["kind"] == "stopped" and row["status"] == "open"]
    assert len(rows) == 1, rows
    return rows[0]


def test_an_acknowledgement_persists_across_a_reload_and_a_recomputation(page, warehouse: Sandbox) -> None:
    start_ts, records = open_stop(warehouse)
    open_page(page, "alerts")
    assert alert_row(page)["acknowledged"] == "no"
    row = page.locator("#alerts_table_grid .ag-center-cols-container .ag-row",
                       has_text=STOPPED_TURBINE).filter(has_text="open").first
    row.click()
    page.wait_for_selector("#ack_status:has-text('Selected')")
    page.fill("#ack_note", "crew on site")
    page.click("#ack_button")
    page.wait_for_selector("#ack_status:has-text('acknowledged by')")

    page.reload()
    page.wait_for_load_state("networkidle")
    acknowledged = alert_row(page)
    assert (acknowledged["acknowledged"], acknowledged["note"]) == ("yes", "crew on site")
    user = acknowledged["acknowledged_by"]
    assert user

    fleet = watched(page.context.new_page())  # left open: it refreshes itself while the pipeline runs
    fleet.goto("/")
    fleet.wait_for_load_state("networkidle")
    clock = fleet.inner_text("#fleet_clock")
    deliver_2015(warehouse, "2015-01-02T12", "2015-01-02T18")
    warehouse.run("inference")
    recomputed_start, recomputed_records = open_stop(warehouse)
    assert (recomputed_start, recomputed_records > records) == (start_ts, True)  # recomputed further
    wait_for(lambda: fleet.inner_text("#fleet_clock") != clock, "the fleet page to refresh itself",
             timeout_s=10 * REFRESH_SECONDS)

    page.reload()
    page.wait_for_load_state("networkidle")
    recomputed = alert_row(page)
    assert (recomputed["acknowledged"], recomputed["acknowledged_by"], recomputed["note"]) == (
        "yes", user, "crew on site")
    assert page.errors == [] and fleet.errors == []
