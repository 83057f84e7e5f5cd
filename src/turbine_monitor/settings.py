"""Project settings. See https://docs.kedro.org/en/stable/kedro_project_setup/settings.html."""

import warnings
from pathlib import Path

from kedro.config import OmegaConfigLoader
from omegaconf.resolvers import oc

from turbine_monitor.hooks import ForgetFinishedMlflowRun

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Kedro 1.x registers its resolvers with OmegaConf's deprecated `register_new_resolver`:
# three multi-line warnings on every configuration load, in every run's log.
warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)

HOOKS = (ForgetFinishedMlflowRun(),)

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
    "config_patterns": {"replay": ["replay*", "replay*/**"], "prefect": ["prefect*", "prefect*/**"]},
    # conf/<env>/prefect.yml and replay.yml override only the keys they set (e.g. one
    # deployment's interval); Kedro's default would replace the whole top-level section.
    "merge_strategy": {"prefect": "soft", "replay": "soft"},
}
