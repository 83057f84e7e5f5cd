"""A sandbox: a copy of the project's configuration whose paths all point into one
folder (landing zone, warehouse, MLflow store and artifacts, replay state, figures), so
that the pipelines, the replay or the whole stack run without touching `data/` or
`mlruns/`. Tests and benchmarks run in sandboxes; so can anyone trying a configuration.

    sandbox = Sandbox.create(Path("/tmp/try"))
    sandbox.run("__default__")
    sandbox.scalar("SELECT count(*) FROM predictions")
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from turbine_monitor.project import PROJECT_ROOT, kedro_session, load_config

RAW_DIR = PROJECT_ROOT / "data" / "01_raw"


@dataclass
class Sandbox:
    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def landing(self) -> Path:
        """The bundled farm's landing folder (farms.yml)."""
        return self.root / "landing" / "la-haute-borne"

    def load(self, key: str) -> dict:
        """The sandbox's configuration `key` (e.g. "globals", "parameters"), as Kedro merges it."""
        return load_config(key, self.conf)

    def set_farms(self, farms: dict[str, dict]) -> None:
        """Replace the fleet: `farms` as `conf/local/farms.yml` (base's `formats` stay)."""
        self._write("farms", {"farms": farms})

    @property
    def warehouse(self) -> Path:
        return Path(self.globals()["paths"]["warehouse"])

    @property
    def mlflow_uri(self) -> str:
        """The sandbox's MLflow store, unless MLFLOW_TRACKING_URI names another."""
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @classmethod
    def create(cls, root: Path, raw_dir: Path = RAW_DIR, **settings: Any) -> Sandbox:
        """`conf/base` copied under `root/conf`, and a `conf/local` pointing every path
        under `root` (the bundled data read from `raw_dir`); `settings` as for `configure`."""
        sandbox = cls(root)
        sandbox.landing.mkdir(parents=True)
        shutil.copytree(PROJECT_ROOT / "conf" / "base", sandbox.conf / "base")
        (sandbox.conf / "local").mkdir()
        sandbox.configure(raw=raw_dir, **settings)
        sandbox._write("mlflow", {
            "server": {"mlflow_tracking_uri": f'${{oc.env:MLFLOW_TRACKING_URI,"{sandbox.mlflow_uri}"}}'},
            "tracking": {"experiment": {"create_experiment_kwargs": {
                "artifact_location": str(root / "mlartifacts")}}}})
        sandbox._write("replay", {"replay": {"state_file": str(root / "replay_state.json")}})
        return sandbox

    def configure(self, raw: Path | None = None, warehouse: Path | None = None,
                  lock_timeout_s: float = 60) -> None:
        """(Re)write the sandbox's `globals.yml`: the bundled data folder and the
        warehouse file (default: as they are, else `root/warehouse.duckdb`), the lock
        wait; and, on first use, its `farms.yml`: the bundled farm, its asset table and
        history (if there) from the bundled data folder, its landing folder `landing`."""
        written = self.globals() if (self.conf / "local" / "globals.yml").exists() else {}
        current = written.get("paths", {})
        postgres = {key: value for key, value in written.get("warehouse", {}).items()
                    if key in ("url", "connect_timeout_s")}  # use_postgres's
        raw = Path(raw or current["raw"])
        self._write("globals", {
            "paths": {"raw": str(raw),
                      "warehouse": str(warehouse or current.get("warehouse", self.root / "warehouse.duckdb")),
                      "reporting": str(self.root / "reporting"),
                      "model_cache": str(self.root / "models")},
            "warehouse": {**load_config("globals", self.conf, env="base")["warehouse"], **postgres,
                          "lock_timeout_s": lock_timeout_s}})
        if not (self.conf / "local" / "farms.yml").exists():
            history = raw / "la-haute-borne-scada-2014.parquet"
            self.set_farms({"la-haute-borne": {
                "assets": str(raw / "la-haute-borne-asset-table.csv"), "format": "la_haute_borne",
                "landing": str(self.landing), **({"history": str(history)} if history.exists() else {})}})

    def use_postgres(self, url: str, connect_timeout_s: float = 30) -> None:
        """Put the warehouse on the PostgreSQL database `url` (libpq URL), as the cluster
        profile does: its warehouse entries (`conf/cluster/catalog*.yml`: the pipelines'
        and the dashboard's) in the sandbox's `conf/local`, and `url` and
        `connect_timeout_s` in its globals' `warehouse` section; `sql` then queries that
        database."""
        for catalog in (PROJECT_ROOT / "conf" / "cluster").glob("catalog*.yml"):
            shutil.copy(catalog, self.conf / "local" / catalog.name)
        content = self.globals()
        content["warehouse"] = {**content["warehouse"], "url": url, "connect_timeout_s": connect_timeout_s}
        self._write("globals", content)

    @property
    def warehouse_url(self) -> str | None:
        """The PostgreSQL warehouse (`use_postgres`); None: the DuckDB file."""
        return self.globals()["warehouse"].get("url")

    def globals(self) -> dict:
        return yaml.safe_load((self.conf / "local" / "globals.yml").read_text())

    def _write(self, name: str, content: dict) -> None:
        (self.conf / "local" / f"{name}.yml").write_text(yaml.safe_dump(content))

    def run(self, pipeline: str = "ingestion", runtime_params: dict | None = None, hooks: tuple = ()) -> None:
        """Run `pipeline` in a KedroSession on the sandbox's configuration."""
        with kedro_session(self.conf, runtime_params=runtime_params, hooks=hooks) as session:
            session.run(pipeline_names=[pipeline])

    def sql(self, query: str) -> list[tuple]:
        if url := self.warehouse_url:
            import psycopg

            with psycopg.connect(url, options="-c TimeZone=UTC") as con:
                return con.execute(query).fetchall()
        import duckdb

        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.sql(query).fetchall()

    def scalar(self, query: str) -> Any:
        return self.sql(query)[0][0]
