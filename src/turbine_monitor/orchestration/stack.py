"""The local Prefect stack as context managers: a Prefect server, a worker on the work
pool, the live SCADA replay, and the registration of the deployments.

    with prefect_server(port=4200, home=Path(".prefect")) as api_url:
        register_deployments(api_url=api_url)
        with prefect_worker("turbine-monitor", api_url), scada_replay():
            ...  # the deployments run on their schedules

Each process is a child of the caller in a process group of its own (so a Ctrl-C in
the terminal reaches the caller only, which decides the order of shutdown). Leaving a
context, normally, on an exception or on KeyboardInterrupt, stops its process group:
SIGTERM, then SIGKILL whatever is left after a grace period. No process is looked up
by name. The flow run processes of a worker are in process groups of their own
(Prefect isolates them): the worker stops them when it is stopped, and `prefect_worker`
then kills any left and sets Crashed the runs they left Running (which would otherwise
hold their deployment's concurrency slot, blocking its later runs).

`entrypoint/up.py` (`make up`) wires these together with the settings a user changes
(host, port, worker polling) from `conf/base/prefect.yml`; tests and benchmarks use
them on temporary configurations.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed

from turbine_monitor.orchestration.flows import PROJECT_ROOT, load_config, register_deployment

STOP_GRACE_S = 15.0
LOG_TAIL_LINES = 30
# Settings every child gets: never prompt (no terminal, maybe no stdin), no analytics.
QUIET = {"PREFECT_CLI_PROMPT": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
STOPPED_WITH_WORKER = "Its process was stopped with the worker."
ORPHANED = "Its process was no longer running (found when the local stack started)."


@contextmanager
def prefect_server(host: str = "127.0.0.1", port: int = 4200, home: Path | None = None,
                   database_url: str | None = None, log_file: Path | None = None,
                   startup_timeout_s: float = 90) -> Iterator[str]:
    """Start `prefect server start` bound to `host:port` and yield its API URL
    (`http://host:port/api`) once `GET <api>/health` answers.

    `home` becomes the server's PREFECT_HOME (its SQLite database is `home/prefect.db`
    unless `database_url`, e.g. `postgresql+asyncpg://user@host:port/db`, says otherwise).
    The server's output goes to `log_file` (default: a temporary file). Raises
    RuntimeError with the end of that output if the server exits or does not answer
    within `startup_timeout_s`."""
    api_url = f"http://{host}:{port}/api"
    _check_port_free(host, port)  # else the health check could reach another server there
    env = {**QUIET, "PREFECT_API_URL": api_url}
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        env["PREFECT_HOME"] = str(home)
    if database_url is not None:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url  # and its newer name:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    temporary_log = log_file is None
    if temporary_log:
        fd, name = tempfile.mkstemp(prefix="prefect-server-", suffix=".log")
        os.close(fd)
        log_file = Path(name)
    try:
        with _child([sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port),
                     "--analytics-off"], env, log_file) as server:
            wait_until_healthy(api_url, startup_timeout_s, server, log_file)
            yield api_url
    finally:
        if temporary_log:
            log_file.unlink(missing_ok=True)


@contextmanager
def prefect_worker(pool: str, api_url: str, env: dict[str, str] | None = None,
                   log_file: Path | None = None, conf_source: str | None = None,
                   kedro_env: str | None = None) -> Iterator[subprocess.Popen]:
    """Start `prefect worker start --pool <pool>` against `api_url`, from the project
    root (the deployments load their flows from source there), with the worker options
    of `prefect.yml` (`worker:`, read from `conf_source`/`kedro_env`); `env` is added to
    the worker's environment, which its flow runs inherit. Output to `log_file`
    (default: the caller's stdout and stderr)."""
    options = load_config(conf_source, kedro_env)["worker"]
    worker_env = {**QUIET, "PREFECT_API_URL": api_url,
                  "PREFECT_WORKER_QUERY_SECONDS": str(options["query_seconds"]), **(env or {})}
    flow_runs: dict[int, int] = {}  # the worker's children when it is stopped: pid -> start time
    try:
        with _child([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
                     "--prefetch-seconds", str(options["prefetch_seconds"])], worker_env, log_file,
                    before_stop=lambda worker: flow_runs.update(_children(worker.pid))) as worker:
            yield worker
    finally:
        alive = {pid: started for pid, state, _, _, started in _processes() if state != "Z"}
        for pid, started in flow_runs.items():  # each leads a group of its own
            if alive.get(pid) == started:  # the same process, not another one with its pid since
                _signal_group(pid, signal.SIGKILL)
        if flow_runs:  # a run whose process the worker stopped before it could report stays Running
            _crash_runs(pool, api_url, set(map(str, flow_runs)).__contains__, STOPPED_WITH_WORKER)


@contextmanager
def scada_replay(args: Sequence[str] = (), env: dict[str, str] | None = None,
                 log_file: Path | None = None) -> Iterator[subprocess.Popen]:
    """Run `entrypoint/replay_scada.py <args>` (e.g. `--conf-source`, `--speed`); on
    exit it is asked to stop (SIGTERM: it finishes the file in hand, keeps its state)."""
    with _child([sys.executable, str(PROJECT_ROOT / "entrypoint" / "replay_scada.py"), *args], env,
                log_file) as replay:
        yield replay


def register_deployments(conf_source: str | None = None, env: str | None = None,
                         api_url: str | None = None) -> dict[str, UUID]:
    """Create the work pool if missing and create or update every deployment of
    `prefect.yml` (training and inference) on the server at `api_url` (default:
    PREFECT_API_URL), from the configuration in `conf_source`/`env`; a `conf_source`
    or `env` given is passed to the flow runs as a parameter (see `register_deployment`).
    Returns the deployment ids by deployment key."""
    names = load_config(conf_source, env)["deployments"]
    with temporary_settings({PREFECT_API_URL: api_url} if api_url else {}):
        return {name: register_deployment(name, conf_source=conf_source, env=env) for name in names}


def crash_orphaned_runs(pool: str, api_url: str) -> int:
    """Set Crashed the flow runs of `pool` left Pending, Running or Cancelling by a flow
    run process that no longer runs on this machine (`make up` killed, machine restarted).
    Such a run would hold its deployment's concurrency slot for good, cancelling every
    later run. Only for a server whose workers all run on this machine (the local one
    `make up` starts), since the process is looked up here. Returns how many."""
    running = {str(pid) for pid, state, *_ in _processes() if state != "Z"}
    return _crash_runs(pool, api_url, lambda pid: pid not in running, ORPHANED)


def _crash_runs(pool: str, api_url: str, stopped: Callable[[str], bool], message: str) -> int:
    """Set Crashed (with `message`) the runs of `pool` still Pending, Running or Cancelling
    whose process id (`infrastructure_pid`) is `stopped`; report, not raise, an error."""
    in_flight = FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING])
    crashed = 0
    try:
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            for run in client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=in_flight)),
                    work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool]))):
                if run.infrastructure_pid and stopped(run.infrastructure_pid):
                    client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                    crashed += 1
    except Exception as error:  # e.g. the server is gone too: do not hide why we are stopping
        print(f"Could not set Crashed the flow runs whose process has stopped: {error!r}", file=sys.stderr)
    return crashed


def _processes() -> Iterator[tuple[int, str, int, int, int]]:
    """(pid, state, parent pid, process group, start time) of every process (Linux /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            yield int(stat.parent.name), fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _children(pid: int) -> dict[int, int]:
    """The live processes whose parent is `pid`, with their start times (none without /proc)."""
    return {child: started for child, state, ppid, _, started in _processes() if ppid == pid and state != "Z"}


@contextmanager
def _child(args: list[str], env: dict[str, str] | None, log_file: Path | None,
           grace_s: float = STOP_GRACE_S,
           before_stop: Callable[[subprocess.Popen], None] | None = None) -> Iterator[subprocess.Popen]:
    """`args` as a child process in a new session (process group) from the project root,
    no stdin, output appended to `log_file` (default: inherited); its group is stopped on
    exit (`stop_group`), after `before_stop(process)` if given."""
    log = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log = log_file.open("ab")
    try:
        process = subprocess.Popen(args, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT if log else None, start_new_session=True)
    finally:
        if log is not None:
            log.close()  # the child has its own descriptor
    try:
        yield process
    finally:
        if before_stop is not None:
            before_stop(process)
        stop_group(process, grace_s)


def stop_group(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """Stop `process` and every process of its group (it leads the group): SIGTERM, wait
    up to `grace_s` for the group to be gone, then SIGKILL what is left."""
    _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies waiting for a parent that
    is not us to reap them do not count; without /proc, any member counts)."""
    if not Path("/proc").is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    return any(pgrp == pgid and state != "Z" for _, state, _, pgrp, _ in _processes())


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: a port
        try:  # with connections of a stopped server in TIME_WAIT is free, one listened on is not
            probe.bind((host, port))
        except OSError as error:
            message = (f"Cannot start a Prefect server on {host}:{port}: {error.strerror}. To use a server "
                       f"already there, set PREFECT_API_URL=http://{host}:{port}/api.")
            raise RuntimeError(message) from None


def wait_until_healthy(api_url: str, timeout_s: float = 60, server: subprocess.Popen | None = None,
                       log_file: Path | None = None) -> None:
    """Return once `GET <api_url>/health` answers 200. Raise RuntimeError if `timeout_s`
    passes or the `server` process (if given) exits first, with the end of `log_file`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"The Prefect server exited with code {server.returncode} before answering "
                               f"on {api_url}.{_tail(log_file)}")
        with suppress(OSError), urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"The Prefect server did not answer on {api_url}/health within {timeout_s:g} s."
                       f"{_tail(log_file)}")


def _tail(log_file: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    if log_file is None:
        return ""
    with suppress(OSError):
        return f" The end of its output ({log_file}):\n" + "\n".join(
            log_file.read_text(errors="replace").splitlines()[-lines:])
    return f" No output in {log_file}."
