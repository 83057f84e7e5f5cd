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

from turbine_monitor.project import PROJECT_ROOT, kedro_session

RAW_DIR = PROJECT_ROOT / "data" / "01_raw"


@dataclass
class Sandbox:
    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

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
        warehouse file (default: as they are, else `root/warehouse.duckdb`), the lock wait."""
        current = self.globals()["paths"] if (self.conf / "local" / "globals.yml").exists() else {}
        self._write("globals", {
            "paths": {"raw": str(raw or current["raw"]), "landing": str(self.landing),
                      "warehouse": str(warehouse or current.get("warehouse", self.root / "warehouse.duckdb")),
                      "reporting": str(self.root / "reporting")},
            "warehouse": {"lock_timeout_s": lock_timeout_s}})

    def globals(self) -> dict:
        return yaml.safe_load((self.conf / "local" / "globals.yml").read_text())

    def _write(self, name: str, content: dict) -> None:
        (self.conf / "local" / f"{name}.yml").write_text(yaml.safe_dump(content))

    def run(self, pipeline: str = "ingestion", runtime_params: dict | None = None, hooks: tuple = ()) -> None:
        """Run `pipeline` in a KedroSession on the sandbox's configuration."""
        with kedro_session(self.conf, runtime_params=runtime_params, hooks=hooks) as session:
            session.run(pipeline_names=[pipeline])

    def sql(self, query: str) -> list[tuple]:
        import duckdb

        with duckdb.connect(str(self.warehouse), read_only=True) as con:
            return con.sql(query).fetchall()

    def scalar(self, query: str) -> Any:
        return self.sql(query)[0][0]
