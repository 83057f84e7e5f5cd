"""Register (or update in place) every deployment of `prefect.yml` and the automations
(alert notifications, crash detection) on the Prefect server of PREFECT_API_URL, from the
configuration of Kedro environment `--env` (default: local). The cluster profile runs it
once, from any host's checkout:

    PREFECT_API_URL=http://prefect-host:4200/api uv run python entrypoint/deploy.py --env cluster
"""

from __future__ import annotations

import argparse

from turbine_monitor.orchestration.stack import register_deployments

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro configuration environment (default: local)")
    args = parser.parse_args()
    for name, deployment_id in register_deployments(env=args.env).items():
        print(f"Registered deployment {name} ({deployment_id})")
