"""A PostgreSQL server of the test's own (initdb in a temporary folder, its own port), for a test that
restarts the server under a running refresh: restarting the shared server would break every other test
running at the same time, so such a test used to run alone, after the rest of the suite.

A helper module, not a test module: import from here, never from a test module or conftest.py.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy.engine import make_url


def _binaries() -> Path:
    """The server's binaries: pg_config's bindir, else Debian's /usr/lib/postgresql/<version>/bin."""
    if shutil.which("pg_config"):
        candidate = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries (initdb) on this machine")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateServer:
    """initdb, start, restart and remove a throwaway server. As root, the server runs as the `postgres`
    user (PostgreSQL refuses to run as root); otherwise as the current user."""

    def __init__(self) -> None:
        self.bin = _binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="sact-private-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(["initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"])
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(["pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.folder / "server.log"),
                   "-o", options, "start"])

    def command(self, argv: list[str]) -> list[str]:
        """argv with the server's binary, run as the server's user."""
        full = [str(self.bin / argv[0]), *argv[1:]]
        return ["runuser", "-u", "postgres", "--", *full] if self.as_postgres else full

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(self.command(argv), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    @property
    def restart_command(self) -> str:
        """A shell command that restarts the server (fast shutdown: open connections are cut). The log file is
        named again: without it the new server would hold the caller's stdout open, and a caller reading
        the hook's output to its end would wait for ever."""
        return shlex.join(self.command(["pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", "fast",
                                        "-l", str(self.folder / "server.log"), "restart"]))

    def is_up(self) -> bool:
        ready = [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(ready, capture_output=True).returncode == 0

    def wait_until_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_up() and time.monotonic() < deadline:
            time.sleep(0.25)
        assert self.is_up(), f"the private PostgreSQL server did not come back (log: {self.folder / 'server.log'})"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def copy_database(self, source_url: str, name: str) -> str:
        """A copy of the database at source_url (on any server) as `name` here: its URL."""
        libpq = make_url(source_url).set(drivername="postgresql").render_as_string(hide_password=False)
        here = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        subprocess.run([str(self.bin / "createdb"), *here, name], check=True, capture_output=True)
        dump = subprocess.Popen([str(self.bin / "pg_dump"), "--no-owner", "--dbname", libpq], stdout=subprocess.PIPE)
        load = subprocess.run([str(self.bin / "psql"), *here, "-q", "-v", "ON_ERROR_STOP=1", "-d", name],
                              stdin=dump.stdout, capture_output=True, text=True)
        dump.stdout.close()
        if dump.wait() or load.returncode:
            raise RuntimeError(f"copying the database into the private server failed:\n{load.stderr}")
        return self.url(name)

    def remove(self) -> None:
        """Stop the server (immediately) and delete its folder."""
        subprocess.run(self.command(["pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
