"""A throwaway PostgreSQL cluster on this machine: Debian's server binaries (`initdb`,
`pg_ctl`), data in a folder of its own, listening on 127.0.0.1 with trust
authentication. `make up-cluster` runs the cluster profile's services on one (its data
in the git-ignored `.cluster/`), and the tests run theirs on one per test. On real
hosts the profile uses a managed PostgreSQL instead (README, "Cluster profile").

As root, `initdb` refuses to run: the server then runs as the `postgres` OS user (the
Debian package creates it), which owns the data folder."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from glob import glob
from pathlib import Path

INSTALL_HINT = "apt-get install postgresql"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries, or a user to run them as, are missing."""


def bindir() -> Path:
    """Where initdb and pg_ctl are (Debian installs them off the PATH), the newest version."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    if not found[-1]:
        raise PostgresUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")
    return Path(found[-1]).parent


def _run_as() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs a server tool as a non-root user, and that user."""
    if os.geteuid() != 0:
        return [], None
    if not shutil.which("runuser"):
        raise PostgresUnavailable("running as root without `runuser` to run PostgreSQL as another user")
    try:
        user = pwd.getpwnam("postgres")
    except KeyError as missing:
        raise PostgresUnavailable("running as root and there is no `postgres` OS user to run "
                                  f"PostgreSQL as: {INSTALL_HINT}") from missing
    return ["runuser", "-u", user.pw_name, "--"], user


@dataclass
class PostgresCluster:
    """A cluster whose data lives in `root/data` and which listens on `port`."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres", driver: str = "") -> str:
        """The SQLAlchemy/libpq URL of `database` (driver e.g. "psycopg", "asyncpg")."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"

    def _tool(self, tool: str, *args: str) -> str:
        prefix, _ = _run_as()
        done = subprocess.run([*prefix, str(bindir() / tool), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        if done.returncode:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}{log[-4000:]}")
        return done.stdout

    def create(self) -> PostgresCluster:
        """Initialise the data folder unless it holds a cluster already."""
        _, user = _run_as()
        self.root.mkdir(parents=True, exist_ok=True)
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        if not (self.data / "PG_VERSION").exists():
            self._tool("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                       "--encoding=UTF8", "--no-sync")
        return self

    def start(self) -> PostgresCluster:
        """Start the server and wait until it accepts connections."""
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200")
        self._tool("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options,
                   "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back open transactions, close connections)."""
        self._tool("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop and start again: every client connection is dropped."""
        self.stop()
        self.start()

    def running(self) -> bool:
        prefix, _ = _run_as()
        done = subprocess.run([*prefix, str(bindir() / "pg_ctl"), "-D", str(self.data), "status"],
                              capture_output=True, stdin=subprocess.DEVNULL)
        return done.returncode == 0

    def create_database(self, name: str) -> None:
        """Create database `name` unless it exists."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            if not con.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                con.execute(f'CREATE DATABASE "{name}"')
