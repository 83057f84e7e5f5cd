"""Register (or update in place) the interval-scheduled Prefect deployment of the inference
flow on the process work pool, and the automation that calls a webhook for each alert it
opens (or, with no webhook configured, say so), everything from `conf/base/prefect.yml`
(`deployments.inference`, `notifications`; docs/orchestration.md: Notifications).

Needs a Prefect server (PREFECT_API_URL); a worker on the pool runs the scheduled runs:

    uv run prefect server start                      # http://127.0.0.1:4200
    uv run python entrypoint/inference_prefect.py
    uv run prefect worker start --pool turbine-monitor   # from the project root
"""

from turbine_monitor.orchestration.flows import register_deployment
from turbine_monitor.orchestration.notifications import register_notifications

if __name__ == "__main__":
    register_deployment("inference")
    register_notifications()
