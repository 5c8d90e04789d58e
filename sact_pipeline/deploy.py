"""A local deployment: dagster-webserver and dagster-daemon on PostgreSQL (`make up` / `make down`).

The instance is the repository's dagster.yaml (dagster-postgres storage, queued runs, run retries,
telemetry off) copied into $SACT_HOME/deploy/dagster; the warehouse is a PostgreSQL database too, because
the queue runs several trust-months at once. Both databases are created when missing, and `up` runs
`db init` on the warehouse (sact_pipeline/database.py) as DAGSTER_PG_USERNAME, the administrator that
creates the databases, so the pipeline connects as the loader role sact_loader. The two processes
run in their own process groups (the webserver and daemon start children), with pid files and logs
beside the instance, so `down` stops everything `up` started, even after the shell that ran it is gone.

Environment (defaults in brackets): SACT_HOME [.sact], SACT_UI_HOST [127.0.0.1], SACT_UI_PORT [3000],
DAGSTER_PG_HOST [127.0.0.1], DAGSTER_PG_PORT [5432], DAGSTER_PG_USERNAME [postgres],
DAGSTER_PG_PASSWORD [empty], DAGSTER_PG_DB [sact_dagster], SACT_WAREHOUSE_URL
[postgresql+psycopg2://sact_loader@<same server>/sact_warehouse, with SACT_DB_LOADER_PASSWORD if set].
Everything else (landing zone, key, schedule) is as for `sact-pipeline refresh`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from sact_pipeline.database import LOADER, create_database, init_database
from sact_pipeline.warehouse import WarehouseError

REPOSITORY = Path(__file__).resolve().parent.parent
PROCESSES = ("webserver", "daemon")


@dataclass(frozen=True)
class Deployment:
    home: Path  # SACT_HOME
    host: str
    port: int
    env: dict[str, str]  # the full environment of both processes

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Deployment":
        env = dict(os.environ if env is None else env)
        home = Path(env.get("SACT_HOME") or ".sact").expanduser().resolve()
        pg = {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "postgres",
              "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_DB": "sact_dagster"}
        for name, default in pg.items():
            env.setdefault(name, default)
        if not env.get("SACT_WAREHOUSE_URL"):
            env["SACT_WAREHOUSE_URL"] = URL.create(
                "postgresql+psycopg2", username=LOADER,
                password=env.get("SACT_DB_LOADER_PASSWORD") or None, host=env["DAGSTER_PG_HOST"],
                port=int(env["DAGSTER_PG_PORT"]), database="sact_warehouse").render_as_string(hide_password=False)
        env["SACT_HOME"] = str(home)
        env["DAGSTER_HOME"] = str(home / "deploy" / "dagster")
        return cls(home, env.get("SACT_UI_HOST") or "127.0.0.1", int(env.get("SACT_UI_PORT") or 3000), env)

    @property
    def folder(self) -> Path:
        return self.home / "deploy"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def pid_file(self, process: str) -> Path:
        return self.folder / f"{process}.pid"

    def log_file(self, process: str) -> Path:
        return self.folder / f"{process}.log"

    def dagster_url(self) -> URL:
        e = self.env
        return URL.create("postgresql+psycopg2", username=e["DAGSTER_PG_USERNAME"],
                          password=e["DAGSTER_PG_PASSWORD"] or None, host=e["DAGSTER_PG_HOST"],
                          port=int(e["DAGSTER_PG_PORT"]), database=e["DAGSTER_PG_DB"])

    def warehouse_admin_url(self) -> URL:
        """The administrator that creates the databases (DAGSTER_PG_*), on the warehouse's server."""
        warehouse = make_url(self.env["SACT_WAREHOUSE_URL"])
        return self.dagster_url().set(host=warehouse.host, port=warehouse.port, database=warehouse.database)


def init_warehouse(deployment: Deployment, log=print) -> None:
    """`db init` on a PostgreSQL warehouse (idempotent; creates the database when missing)."""
    if make_url(deployment.env["SACT_WAREHOUSE_URL"]).get_backend_name() != "postgresql":
        return
    try:
        lines = init_database(deployment.env["SACT_WAREHOUSE_URL"], env=deployment.env,
                              admin_url=deployment.warehouse_admin_url().render_as_string(hide_password=False))
    except WarehouseError as error:
        raise SystemExit(str(error)) from None
    for line in lines:
        log(f"warehouse: {line}")


def _running(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if this process started it (tests do), or it stays a zombie
        except ChildProcessError:
            pass
        os.killpg(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def up(deployment: Deployment, *, wait_seconds: float = 120, log=print) -> None:
    """Start the webserver and the daemon (if not running) and wait until the UI answers."""
    deployment.folder.mkdir(parents=True, exist_ok=True)
    dagster_home = Path(deployment.env["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPOSITORY / "dagster.yaml", dagster_home / "dagster.yaml")
    create_database(deployment.dagster_url())
    init_warehouse(deployment, log)
    bin_dir = Path(sys.executable).parent
    commands = {
        "webserver": [str(bin_dir / "dagster-webserver"), "-w", str(REPOSITORY / "workspace.yaml"),
                      "-h", deployment.host, "-p", str(deployment.port)],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", str(REPOSITORY / "workspace.yaml")],
    }
    for process, command in commands.items():
        if _running(deployment.pid_file(process)):
            log(f"{process} already running (pid file {deployment.pid_file(process)})")
            continue
        with open(deployment.log_file(process), "ab") as output:
            child = subprocess.Popen(command, cwd=REPOSITORY, env=deployment.env, stdout=output,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deployment.pid_file(process).write_text(str(child.pid))
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with urllib.request.urlopen(f"{deployment.url}/server_info", timeout=5):
                break
        except (urllib.error.URLError, OSError):
            if not _running(deployment.pid_file("webserver")):
                raise SystemExit(f"the webserver stopped; see {deployment.log_file('webserver')}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the webserver did not answer within {wait_seconds:.0f}s; "
                                 f"see {deployment.log_file('webserver')}")
            time.sleep(1)
    log(f"Dagster UI on {deployment.url} (instance {dagster_home}, logs in {deployment.folder})")


def down(deployment: Deployment, *, grace_seconds: float = 15, log=print) -> None:
    """Stop both process groups: SIGTERM, then SIGKILL for whatever is left after the grace period."""
    for process in PROCESSES:
        pid = _running(deployment.pid_file(process))
        if pid is None:
            deployment.pid_file(process).unlink(missing_ok=True)
            continue
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while _running(deployment.pid_file(process)) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _running(deployment.pid_file(process)):
            os.killpg(pid, signal.SIGKILL)
        deployment.pid_file(process).unlink(missing_ok=True)
        log(f"{process} stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sact_pipeline.deploy", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    deployment = Deployment.from_env()
    (up if args.action == "up" else down)(deployment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
