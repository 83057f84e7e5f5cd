"""The project's root folder, its Kedro configuration and Kedro sessions, for what runs
outside `kedro run`: the Prefect flows and deployments, `make up`, the replay,
benchmarks and tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kedro.framework.session import KedroSession

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
