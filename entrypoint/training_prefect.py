"""Register (or update in place) the interval-scheduled Prefect deployment of the training
flow on the process work pool, everything from `conf/base/prefect.yml` (`deployments.training`).

Needs a Prefect server (PREFECT_API_URL); a worker on the pool runs the scheduled runs:

    uv run prefect server start                      # http://127.0.0.1:4200
    uv run python entrypoint/training_prefect.py
    uv run prefect worker start --pool turbine-monitor   # from the project root
"""

from turbine_monitor.orchestration.flows import register_deployment

if __name__ == "__main__":
    register_deployment("training")
