"""A PgBouncer in transaction pooling mode in front of the server under test.

From the Debian package (`.ci/run` installs it). It listens on a free loopback
port, with its configuration and user list in a folder of its own, and stops
with the block. As root it drops to an unprivileged user: PgBouncer refuses to
run as root.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from tests.support.databases import admin_conninfo
from tests.support.ports import free_port
from tests.support.project import outside_pytest_tmp

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 15.0
# Fewer server connections than the clients' pools hold: transactions of one
# client connection land on different server connections, as in production.
SERVER_POOL_SIZE = 8


@dataclass(frozen=True)
class PgBouncer:
    port: int
    log: Path

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def server_address() -> tuple[str, str]:
    """Host (or socket folder) and port of the server under test."""
    server = conninfo_to_dict(admin_conninfo())
    return str(server.get("host") or "127.0.0.1"), str(server.get("port") or 5432)


def unprivileged_user() -> str:
    """Whoever owns the server's socket folder can reach it; anyone reaches TCP."""
    host, _ = server_address()
    return pwd.getpwuid(Path(host).stat().st_uid).pw_name if host.startswith("/") else "nobody"


def config(port: int, users: Path) -> str:
    host, server_port = server_address()
    return f"""\
[databases]
* = host={host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = transaction
default_pool_size = {SERVER_POOL_SIZE}
max_client_conn = 1000
"""


@contextlib.contextmanager
def pgbouncer() -> Iterator[PgBouncer]:
    executable = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(executable).exists():
        raise AssertionError("pgbouncer is not installed: apt-get install -y pgbouncer")
    with outside_pytest_tmp("template-pgbouncer-") as folder:
        port = free_port()
        users = folder / "users.txt"
        users.write_text('"postgres" ""\n')
        ini = folder / "pgbouncer.ini"
        ini.write_text(config(port, users))
        command = [executable, str(ini)]
        if os.geteuid() == 0:
            # The unprivileged user reads the configuration from this folder.
            folder.chmod(0o755)
            command[1:1] = ["-u", unprivileged_user()]
        log = folder / "pgbouncer.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            wait_until_listening(process, port, log)
            yield PgBouncer(port, log)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)  # PgBouncer's safe shutdown
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_until_listening(process: "subprocess.Popen[bytes]", port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pgbouncer exited:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise AssertionError(f"pgbouncer did not listen in {START_TIMEOUT_SECONDS} s")
