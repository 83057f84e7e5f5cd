"""The local stack: a Prefect server, a worker on the work pool, the live SCADA replay,
the registration of the deployments, and a supervisor that restarts what dies.

    with prefect_server(port=4200, home=Path(".prefect")) as server:
        register_deployments(api_url=server.api_url)     # and the alert automation
        with Supervisor(RestartPolicy()) as supervisor:
            supervisor.add(worker_service("turbine-monitor", server.api_url))
            supervisor.add(replay_service())
            supervisor.watch(server.service)    # returns when a service gives up

Every process is a child of the caller in a process group of its own (so a Ctrl-C in
the terminal reaches the caller only, which decides the order of shutdown), started
from the project root with no stdin, its output appended to a log file. Stopping a
service stops its process group: SIGTERM, then SIGKILL whatever is left after a grace
period. No process is looked up by name.

The flow runs of a worker are its child processes. The worker service records them
while it runs; when the worker stops or dies it stops the ones left (SIGTERM first:
Prefect's engine then marks the run Crashed and runs its `on_crashed` hooks; SIGKILL
after a grace period) and sets Crashed the runs they held, which would otherwise hold
their deployment's concurrency slot.

`entrypoint/up.py` (`make up`) wires these together with the settings of
`conf/base/prefect.yml`; tests and benchmarks use them on temporary configurations.
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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from uuid import UUID

import psutil
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed

from turbine_monitor.orchestration.crash_detection import register_crash_detection
from turbine_monitor.orchestration.flows import prefect_config, register_deployment
from turbine_monitor.orchestration.notifications import register_notifications
from turbine_monitor.project import PROJECT_ROOT

STOP_GRACE_S = 15.0
LOG_TAIL_LINES = 30
# Settings every child gets: never prompt (no terminal, maybe no stdin), no analytics.
QUIET = {"PREFECT_CLI_PROMPT": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
STOPPED_WITH_WORKER = "Its process was stopped with the worker."
WORKER_DIED = "Its worker died; its process was stopped before a new worker started."
ORPHANED = "Its process was no longer running (found when the local stack started)."
IN_FLIGHT = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]


class GaveUp(RuntimeError):
    """A supervised service kept dying: the stack stops."""


class Service:
    """A long-lived process of the stack: `args` run from `cwd` (default: the project
    root) in a process group of its own, no stdin, output appended to `log_file` (default:
    inherited)."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str] | None = None,
                 log_file: Path | None = None, restart_on_success: bool = True, cwd: Path = PROJECT_ROOT):
        self.name, self.args, self.env, self.log_file = name, list(args), env or {}, log_file
        self.cwd = cwd
        self.restart_on_success = restart_on_success  # False: exiting with 0 means done (the replay)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_file.open("ab")
        try:
            self.process = subprocess.Popen(
                self.args, cwd=self.cwd, env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT if log else None, start_new_session=True)
        finally:
            if log is not None:
                log.close()  # the child has its own descriptor

    def poll(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return None if self.process is None else self.process.poll()

    def watch(self) -> None:
        """Called every supervisor tick while the process runs."""

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        if self.process is not None:
            stop_group(self.process, grace_s)

    def after_exit(self) -> None:
        """Called once the process has exited or been stopped."""

    def tail(self) -> str:
        return _tail(self.log_file)


class WorkerService(Service):
    """`prefect worker start --pool <pool>`; records its flow-run processes, and once it
    has exited stops those left (they would hold their runs and deployment slots with
    nobody watching them) and sets Crashed the runs they held."""

    def __init__(self, pool: str, api_url: str, args: Sequence[str], env: dict[str, str],
                 log_file: Path | None, stop_grace_s: float, name: str = "Prefect worker",
                 cwd: Path = PROJECT_ROOT):
        super().__init__(name, args, env, log_file, cwd=cwd)
        self.pool, self.api_url, self.stop_grace_s = pool, api_url, stop_grace_s
        self.flow_runs: dict[psutil.Process, str | None] = {}  # process -> its flow run id
        self.stopped = False  # by us, not died

    def start(self) -> None:
        self.flow_runs.clear()
        self.stopped = False
        super().start()

    def watch(self) -> None:
        with suppress(psutil.Error):
            for child in psutil.Process(self.process.pid).children():
                if self.flow_runs.get(child) is None:  # new, or seen before its exec set the id
                    with suppress(psutil.Error):
                        self.flow_runs[child] = child.environ().get("PREFECT__FLOW_RUN_ID")

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        self.watch()  # the runs under way now
        self.stopped = True
        super().stop(grace_s)

    def after_exit(self) -> None:
        left = [process for process in self.flow_runs if process.is_running()]
        for process in left:
            with suppress(psutil.Error):
                process.terminate()
        _, still = psutil.wait_procs(left, timeout=self.stop_grace_s)
        for process in still:
            with suppress(psutil.Error):
                process.kill()
        held = {run_id for run_id in self.flow_runs.values() if run_id}
        # A run whose process had to be stopped here may report Failed as it goes (the stop
        # surfacing in its code as an error): it was stopped all the same.
        stopped_here = {self.flow_runs[process] for process in left if self.flow_runs[process]}
        if held:
            _crash_runs(self.api_url, held, STOPPED_WITH_WORKER if self.stopped else WORKER_DIED,
                        failed_too=stopped_here)
        self.flow_runs.clear()


@dataclass
class RestartPolicy:
    """A service that exits is started again after `first_backoff_s`, doubling with each
    restart up to `max_backoff_s`, at most `max_restarts` times within `window_s`."""

    max_restarts: int = 5
    window_s: float = 600.0
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0


@dataclass
class _Supervised:
    service: Service
    restarts: list[float] = field(default_factory=list)  # monotonic times
    restart_at: float | None = None
    done: bool = False


class Supervisor:
    """Starts services and keeps them running by `policy`; a service restarted too often
    raises `GaveUp`. Leaving the context stops every service, the last added first."""

    def __init__(self, policy: RestartPolicy, say: Callable[[str], None] = print, tick_s: float = 1.0):
        self.policy, self.say, self.tick_s = policy, say, tick_s
        self._supervised: list[_Supervised] = []

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        for entry in reversed(self._supervised):
            if entry.service.poll() is None:
                entry.service.stop()
            entry.service.after_exit()

    def add(self, service: Service) -> Service:
        service.start()
        self._supervised.append(_Supervised(service))
        return service

    def check(self) -> None:
        """One pass: watch the running services, restart those due, note those that exited."""
        now = time.monotonic()
        for entry in self._supervised:
            service = entry.service
            code = service.poll()
            if entry.done:
                continue
            if code is None:
                service.watch()
                continue
            if entry.restart_at is None:  # it has just exited
                service.after_exit()
                if code == 0 and not service.restart_on_success:
                    self.say(f"The {service.name} has finished.")
                    entry.done = True
                    continue
                entry.restarts = [t for t in entry.restarts if now - t < self.policy.window_s]
                if len(entry.restarts) >= self.policy.max_restarts:
                    raise GaveUp(f"The {service.name} exited with code {code} after {len(entry.restarts)} "
                                 f"restarts within {self.policy.window_s:g} s; giving up.{service.tail()}")
                backoff = min(self.policy.first_backoff_s * 2 ** len(entry.restarts),
                              self.policy.max_backoff_s)
                entry.restart_at = now + backoff
                self.say(f"The {service.name} exited with code {code}; restarting it in {backoff:g} s "
                         f"(restart {len(entry.restarts) + 1} of at most {self.policy.max_restarts} "
                         f"within {self.policy.window_s:g} s).")
            elif now >= entry.restart_at:
                entry.restarts.append(now)
                entry.restart_at = None
                service.start()
                self.say(f"The {service.name} was restarted (pid {service.process.pid}).")

    def watch(self, essential: Service | None = None) -> None:
        """Check every `tick_s` until a service gives up (`GaveUp`) or `essential`, a
        process that is not restarted (the server), exits (RuntimeError)."""
        while True:
            self.check()
            if essential is not None and (code := essential.poll()) is not None:
                raise RuntimeError(f"The {essential.name} exited with code {code}.{essential.tail()}")
            time.sleep(self.tick_s)


@dataclass
class PrefectServer:
    api_url: str
    service: Service


@contextmanager
def prefect_server(host: str = "127.0.0.1", port: int = 4200, home: Path | None = None,
                   database_url: str | None = None, log_file: Path | None = None,
                   startup_timeout_s: float = 90, settings: dict[str, str] | None = None,
                   ) -> Iterator[PrefectServer]:
    """Start `prefect server start` bound to `host:port` and yield it once
    `GET <api>/health` answers (`api_url`: `http://host:port/api`).

    `home` becomes the server's PREFECT_HOME (its SQLite database is `home/prefect.db`
    unless `database_url`, e.g. `postgresql+asyncpg://user@host:port/db`, says otherwise);
    `settings` are more PREFECT_* variables for it. The server's output goes to
    `log_file` (default: a temporary file). Raises RuntimeError with the end of that
    output if the server exits or does not answer within `startup_timeout_s`."""
    api_url = f"http://{host}:{port}/api"
    _check_port_free(host, port)  # else the health check could reach another server there
    env = {**QUIET, "PREFECT_API_URL": api_url, **(settings or {})}
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
    server = Service("Prefect server", [sys.executable, "-m", "prefect", "server", "start", "--host", host,
                                        "--port", str(port), "--analytics-off"], env, log_file)
    try:
        server.start()
        try:
            wait_until_healthy(api_url, startup_timeout_s, server)
            yield PrefectServer(api_url, server)
        finally:
            server.stop()
    finally:
        if temporary_log:
            log_file.unlink(missing_ok=True)


def worker_service(pool: str, api_url: str, env: dict[str, str] | None = None, log_file: Path | None = None,
                   conf_source: str | None = None, kedro_env: str | None = None, name: str | None = None,
                   project: Path = PROJECT_ROOT) -> WorkerService:
    """`prefect worker start --pool <pool>` against `api_url`, from `project` (the
    project root or a copy of it: the flow runs run there, on its code and configuration),
    with the worker options of `prefect.yml` (`worker:`, read from
    `conf_source`/`kedro_env`); `env` is added to the worker's environment, which its flow
    runs inherit, and the interpreter running this code comes first on their PATH (the
    deployments' `command` runs `python`). A copy's `src` comes first on their PYTHONPATH.
    `name` is the worker's name on the server (default: Prefect's, a random one)."""
    config = prefect_config(conf_source, kedro_env)
    options = config["worker"]
    bindir = str(Path(sys.executable).parent)
    worker_env = {**QUIET, "PREFECT_API_URL": api_url,
                  "PREFECT_WORKER_QUERY_SECONDS": str(options["query_seconds"]),
                  "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")]),
                  **({"PYTHONPATH": str(project / "src")} if project != PROJECT_ROOT else {}), **(env or {})}
    args = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool,
            "--prefetch-seconds", str(options["prefetch_seconds"]), *(["--name", name] if name else []),
            *(["--limit", str(options["limit"])] if options.get("limit") else [])]
    return WorkerService(pool, api_url, args, worker_env, log_file,
                         stop_grace_s=config["supervisor"]["stop_grace_seconds"],
                         name=f"Prefect worker {name}" if name else "Prefect worker", cwd=project)


@contextmanager
def prefect_worker(pool: str, api_url: str, env: dict[str, str] | None = None,
                   log_file: Path | None = None, conf_source: str | None = None,
                   kedro_env: str | None = None) -> Iterator[WorkerService]:
    """A worker (`worker_service`) for the time of the block, not restarted; on exit it
    is stopped with the flow runs it started."""
    worker = worker_service(pool, api_url, env, log_file, conf_source, kedro_env)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        worker.after_exit()


def replay_service(args: Sequence[str] = (), env: dict[str, str] | None = None,
                   log_file: Path | None = None) -> Service:
    """`entrypoint/replay_scada.py <args>` (e.g. `--conf-source`, `--speed`); stopping it
    sends SIGTERM (it finishes the file in hand, keeps its state); exiting with 0 means
    the data has ended."""
    return Service("SCADA replay", [sys.executable, str(PROJECT_ROOT / "entrypoint" / "replay_scada.py"),
                                    *args], env, log_file, restart_on_success=False)


def dashboard_service(env: dict[str, str] | None = None, log_file: Path | None = None,
                      args: Sequence[str] = (), project: Path = PROJECT_ROOT) -> Service:
    """`kedro dashboard <args>` (e.g. `--env`, `--port`; conf/base/dashboard.yml) from
    `project` (the project root or a copy of it): the web dashboard on the warehouse,
    restarted like the others if it dies."""
    if project != PROJECT_ROOT:
        env = {"PYTHONPATH": str(project / "src"), **(env or {})}
    return Service("dashboard", [sys.executable, "-m", "kedro", "dashboard", *args], env, log_file,
                   cwd=project)


@contextmanager
def scada_replay(args: Sequence[str] = (), env: dict[str, str] | None = None,
                 log_file: Path | None = None) -> Iterator[Service]:
    """The replay (`replay_service`) for the time of the block."""
    replay = replay_service(args, env, log_file)
    replay.start()
    try:
        yield replay
    finally:
        replay.stop()


def restart_policy(config: dict) -> RestartPolicy:
    """The supervisor's policy from `prefect.yml` (`supervisor:`)."""
    options = config["supervisor"]
    return RestartPolicy(max_restarts=options["max_restarts"], window_s=options["window_seconds"],
                         first_backoff_s=options["first_backoff_seconds"],
                         max_backoff_s=options["max_backoff_seconds"])


def register_deployments(conf_source: str | None = None, env: str | None = None,
                         api_url: str | None = None) -> dict[str, UUID]:
    """Create the work pool if missing and create or update every deployment of
    `prefect.yml` (training and inference) and the automations of the alert
    notifications and the crash detection (`notifications`, `crash_detection`) on the
    server at `api_url` (default: PREFECT_API_URL), from the configuration in
    `conf_source`/`env`; a `conf_source` or `env` given is passed to the flow runs as a
    parameter (see `register_deployment`).
    Returns the deployment ids by deployment key."""
    names = prefect_config(conf_source, env)["deployments"]
    with temporary_settings({PREFECT_API_URL: api_url} if api_url else {}):
        ids = {name: register_deployment(name, conf_source=conf_source, env=env) for name in names}
        register_notifications(conf_source, env)
        register_crash_detection(conf_source, env)
    return ids


def crash_orphaned_runs(pool: str, api_url: str) -> int:
    """Set Crashed the flow runs of `pool` left Pending, Running or Cancelling by a flow
    run process that no longer runs on this machine (`make up` killed, machine restarted).
    Such a run would hold its deployment's concurrency slot for good, blocking its later
    runs. Only for a server whose workers all run on this machine (the local one `make up`
    starts), since the process is looked up here. Returns how many."""
    in_flight = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=IN_FLIGHT)))
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=in_flight,
                                     work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))
    gone = {run.id for run in runs if not (run.infrastructure_pid and _is_flow_run_process(
        int(run.infrastructure_pid), run.id))}
    return _crash_runs(api_url, gone, ORPHANED)


def _is_flow_run_process(pid: int, flow_run_id: UUID) -> bool:
    try:
        return psutil.Process(pid).environ().get("PREFECT__FLOW_RUN_ID") == str(flow_run_id)
    except psutil.Error:
        return False


def _crash_runs(api_url: str, flow_run_ids: set, message: str, failed_too: set = frozenset()) -> int:
    """Set Crashed (with `message`) those of `flow_run_ids` still Pending, Running or
    Cancelling, and those of `failed_too` that ended Failed; report, not raise, an error
    (the server may be gone too)."""
    if not flow_run_ids:
        return 0
    crashed = 0
    failed_too = {str(i) for i in failed_too}
    try:
        with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            states = FlowRunFilterStateType(any_=[*IN_FLIGHT, StateType.FAILED])
            for run in client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[UUID(str(i)) for i in flow_run_ids]),
                    state=FlowRunFilterState(type=states))):
                if run.state_type == StateType.FAILED and str(run.id) not in failed_too:
                    continue
                client.set_flow_run_state(run.id, Crashed(message=message), force=True)
                crashed += 1
    except Exception as error:
        print(f"Could not set Crashed the flow runs whose process has stopped: {error!r}", file=sys.stderr)
    return crashed


def stop_group(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """Stop `process` and every process of its group (it leads the group): SIGTERM, wait
    up to `grace_s` for the group to be gone, then SIGKILL what is left."""
    members = _group(process.pid)
    _signal_group(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    psutil.wait_procs([m for m in members if m.pid != process.pid], timeout=grace_s)
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _group(pgid: int) -> list[psutil.Process]:
    """The live processes of process group `pgid` (POSIX)."""
    members = []
    for process in psutil.process_iter():
        with suppress(psutil.Error, ProcessLookupError):  # gone since it was listed
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def say(message: str) -> None:
    """Print `message` with the time, at once (the stack's own lines among its services')."""
    print(f"{datetime.now():%H:%M:%S} {message}", flush=True)


def stop_on_signals(command: str) -> None:
    """SIGTERM and SIGHUP stop `command` (`make up`) the way Ctrl-C does
    (KeyboardInterrupt); once stopping, further signals are ignored so that the cleanup
    runs to its end."""
    def stop(signum: int, frame: object) -> None:
        for other in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(other, signal.SIG_IGN)
        print(f"\n{signal.Signals(signum).name}: stopping everything `{command}` started...", flush=True)
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now (for a server a test or benchmark starts)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: a port
        try:  # with connections of a stopped server in TIME_WAIT is free, one listened on is not
            probe.bind((host, port))
        except OSError as error:
            message = (f"Cannot start a Prefect server on {host}:{port}: {error.strerror}. To use a server "
                       f"already there, set PREFECT_API_URL=http://{host}:{port}/api.")
            raise RuntimeError(message) from None


def wait_until_healthy(api_url: str, timeout_s: float = 60, server: Service | None = None) -> None:
    """Return once `GET <api_url>/health` answers 200 (the Prefect API's, or the MLflow
    server's at its root URL). Raise RuntimeError if `timeout_s` passes or the `server`
    process (if given) exits first, with the end of its log."""
    name = server.name if server else "Prefect server"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and (code := server.poll()) is not None:
            raise RuntimeError(f"The {name} exited with code {code} before answering "
                               f"on {api_url}.{server.tail()}")
        with suppress(OSError), urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"The {name} did not answer on {api_url}/health within {timeout_s:g} s."
                       f"{server.tail() if server else ''}")


def _tail(log_file: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    if log_file is None:
        return ""
    with suppress(OSError):
        return f" The end of its output ({log_file}):\n" + "\n".join(
            log_file.read_text(errors="replace").splitlines()[-lines:])
    return f" No output in {log_file}."
