"""Project settings. See https://docs.kedro.org/en/stable/kedro_project_setup/settings.html."""

import warnings

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from turbine_monitor.hooks import (
    FarmFailureHooks,
    ForgetFinishedMlflowRun,
    FrozenStartupObjects,
    LoggingLevels,
    ModelRegistryHooks,
    RunSummaryHooks,
)
from turbine_monitor.project import PROJECT_ROOT

# Kedro 1.x registers its resolvers with OmegaConf's deprecated `register_new_resolver`:
# three multi-line warnings on every configuration load, in every run's log.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

HOOKS = (FrozenStartupObjects(), LoggingLevels(), ForgetFinishedMlflowRun(), ModelRegistryHooks(),
         RunSummaryHooks(), FarmFailureHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {
        # `oc.env` everywhere (Kedro enables it for credentials only), so that
        # MLFLOW_TRACKING_URI can override the tracking store in mlflow.yml.
        "oc.env": oc.env,
        "project_root": lambda: PROJECT_ROOT.as_posix(),
    },
    # farms.yml is read with the globals, so that the catalog and the parameters can use it;
    # `mlflow` is kedro-mlflow's pattern (it adds it as a session starts), declared here so
    # that `project.load_config("mlflow")` works outside a session too.
    "config_patterns": {"globals": ["globals.yml", "farms*", "farms*/**"],
                        "replay": ["replay*", "replay*/**"],
                        "prefect": ["prefect*", "prefect*/**"],
                        "mlflow": ["mlflow*", "mlflow*/**"],
                        "dashboard": ["dashboard*", "dashboard*/**"],
                        "cluster": ["cluster*", "cluster*/**"]},
    # A file in conf/<env> overrides only the keys it sets (e.g. one deployment's interval,
    # the MLflow tracking URI); Kedro's default, for the others, replaces whole top-level
    # sections (a local farms.yml's `farms:` is the whole fleet).
    "merge_strategy": {"mlflow": "soft", "prefect": "soft", "replay": "soft", "dashboard": "soft"},
}
