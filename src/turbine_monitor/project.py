"""The project's root folder, its Kedro configuration and Kedro sessions, for what runs
outside `kedro run`: the Prefect flows and deployments, `make up`, the replay,
benchmarks and tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kedro.framework.session import KedroSession

PROJECT_ROOT = Path(__file__).resolve().parents[2]
logger = logging.getLogger(__name__)


def load_config(key: str, conf_source: str | Path | None = None, env: str | None = None) -> dict[str, Any]:
    """The configuration `key` (e.g. "prefect", "globals", "parameters") as Kedro's
    config loader merges it from `conf_source` (default: the project's `conf/`): the
    base environment, then `env` (default: `local`), resolvers and merge rules of
    `settings.py` applied."""
    from kedro.config import OmegaConfigLoader

    from turbine_monitor import settings

    loader = OmegaConfigLoader(conf_source=str(conf_source or PROJECT_ROOT / "conf"), env=env,
                               **settings.CONFIG_LOADER_ARGS)
    return loader[key]


@contextmanager
def kedro_session(conf_source: str | Path | None = None, env: str | None = None,
                  runtime_params: dict | None = None, hooks: tuple = ()) -> Iterator[KedroSession]:
    """A KedroSession of the project with the project's hooks and, for this session
    only, `hooks` (objects with `@hook_impl` methods)."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT, conf_source=conf_source and str(conf_source), env=env,
                             runtime_params=runtime_params) as session:
        for hook in hooks:  # Kedro has no public way to add a hook to one session
            session._hook_manager.register(hook)
        yield session


def run_fleet_round(conf_source: str | Path | None = None, env: str | None = None,
                    runtime_params: dict | None = None) -> list[str]:
    """One round of the monitor over the fleet, each step a Kedro session of its own
    (with `runtime_params`): ingest every farm's new files, train each farm whose
    retraining gate is open (the `training_plan`; one session and MLflow run per farm),
    then score and update alerts. The run summary covers the whole round. A farm whose
    training fails does not stop the others' nor scoring; the round then raises
    `FarmFailures` naming every failed farm. Returns the farms trained."""
    from kedro.framework.project import settings
    from kedro.framework.startup import bootstrap_project
    from kedro.runner import SequentialRunner

    from turbine_monitor.hooks import RunSummaryHooks
    from turbine_monitor.values import FarmFailures

    def run(pipeline: str, farm: str | None = None) -> dict[str, Any]:
        params = {**(runtime_params or {}), **({"farm": farm} if farm else {})}
        with kedro_session(conf_source, env, params) as session:
            return session.run(pipeline_names=[pipeline], runner=SequentialRunner())

    bootstrap_project(PROJECT_ROOT)
    summary = next(hook for hook in settings.HOOKS if isinstance(hook, RunSummaryHooks))
    failures: dict[str, Exception] = {}
    with summary.deferred():
        run("ingestion")
        farms = run("training_plan")["farms_to_train"].load()
        for farm in farms:
            try:
                run("training", farm)
            except Exception as error:  # the other farms train, and every farm is scored
                logger.error("Training farm %s failed: %s", farm, error)
                failures[farm] = error
        try:
            run("inference")
        except FarmFailures as failed:
            failures.update(failed.failures)
    if failures:
        raise FarmFailures(failures)
    return farms
