# One entry point for what everyone does: `make run`, `make test` (what CI runs), `make up`.
# Each installs what it needs first (uv, then the locked environment in .venv).

UV_VERSION := 0.13.9
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: setup postgres run test check lint up up-cluster viz dashboard mlflow-ui notebook

# Compiles every installed package and the project's own sources to bytecode: where
# Python may not write __pycache__ (PYTHONDONTWRITEBYTECODE, a read-only install) each
# process would otherwise compile its imports again (`import mlflow` 7 s instead of 2 s),
# every flow run included.
setup:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	UV_COMPILE_BYTECODE=1 uv sync --locked --quiet
	uv run --no-sync python -m compileall -q src entrypoint

## Run the main job: one round of the monitor over every farm of conf/base/farms.yml
## (ingest, train each farm due, score, alerts): `kedro run-fleet`.
run: setup
	uv run kedro run-fleet

## All the tests and the linter: what CI runs (.ci/run). About 19 minutes on 2 cores.
test: setup lint
	uv run pytest

## The fast tier: units and the pipelines on small data, no servers (about a minute).
check: setup lint
	uv run pytest -m "not slow"

lint: setup
	uv run ruff check .

## The whole monitor locally until Ctrl-C: bootstrap the warehouse if empty, a Prefect
## server (unless PREFECT_API_URL is set), both deployments, a supervised worker and replay.
up: setup
	uv run python entrypoint/up.py

## The cluster profile on this machine until Ctrl-C (conf/cluster/cluster.yml): PostgreSQL
## (warehouse, MLflow and Prefect databases), the MLflow tracking server, the Prefect server,
## two workers each in its own copy of the project, a synthetic fleet replaying, the dashboard.
up-cluster: setup postgres
	uv run python entrypoint/up_cluster.py

## PostgreSQL's server binaries (Debian's `postgresql`), for the cluster profile: installed if missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq postgresql >/dev/null; }

## Pipeline graph in the browser (http://127.0.0.1:4141).
viz: setup
	uv run kedro viz run --no-browser --host 127.0.0.1

## The dashboard on the warehouse (http://127.0.0.1:8050; conf/base/dashboard.yml): fleet,
## turbine, alerts with acknowledgement, losses, pipelines. `--host`/`--port` via ARGS.
dashboard: setup
	uv run kedro dashboard $(ARGS)

## MLflow UI on the project's tracking store (http://127.0.0.1:5000).
mlflow-ui: setup
	uv run kedro mlflow ui

## The results notebook in JupyterLab (http://127.0.0.1:8888); run `make run` first.
notebook: setup
	uv run --group notebook jupyter lab notebooks/turbine_performance.ipynb --no-browser --ip 127.0.0.1
