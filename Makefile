# One entry point for the two things everyone does: `make run` and `make test`.
# Each installs what it needs first (uv, then the locked environment in .venv).

UV_VERSION := 0.13.9
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: setup run test lint up viz mlflow-ui

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	uv sync --locked

## Run the main job: `kedro run` of the default pipeline on the bundled data.
run: setup
	uv run kedro run

## Run the tests (and the linter).
test: setup lint
	uv run pytest

lint: setup
	uv run ruff check .

## The whole monitor locally until Ctrl-C: bootstrap the warehouse if empty, a Prefect
## server (unless PREFECT_API_URL is set), both deployments, a worker, the SCADA replay.
up: setup
	uv run python entrypoint/up.py

## Pipeline graph in the browser (http://127.0.0.1:4141).
viz: setup
	uv run kedro viz run --no-browser --host 127.0.0.1

## MLflow UI on the project's tracking store (http://127.0.0.1:5000).
mlflow-ui: setup
	uv run kedro mlflow ui
