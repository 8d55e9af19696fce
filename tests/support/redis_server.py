"""A Redis server that one test module owns: it can stop it and start it again.

From the Debian package (`.ci/run` installs it), on a free loopback port, with
no persistence: the machine's shared Redis on 6379 is never touched.
"""

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.ports import free_port

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 15.0


class RedisServer:
    def __init__(self, folder: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise AssertionError("redis-server is not installed: apt-get install -y redis-server")
        self.command = [
            executable,
            "--bind", "127.0.0.1",
            "--port", str(free_port()),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(folder),
        ]  # fmt: skip
        self.port = int(self.command[4])
        self.log = folder / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """What LOGIN_LIMIT_STORAGE_URI says to use it."""
        return f"async+redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.process is not None:
            return
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self.command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not listen:\n{self.log.read_text()}")

    def keys(self) -> list[str]:
        """Every key the server holds, read with the package's own client."""
        client = self.command[0].replace("redis-server", "redis-cli")
        scan = [client, "-p", str(self.port), "--scan"]
        return subprocess.run(scan, capture_output=True, text=True, check=True).stdout.split()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
