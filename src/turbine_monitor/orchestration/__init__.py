"""Prefect orchestration of the Kedro pipelines: `flows` (the flows and their
deployments) and `runner` (Kedro nodes as Prefect task runs)."""
