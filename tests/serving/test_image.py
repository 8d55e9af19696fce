"""The production image, run without Docker, exactly as the rendered Dockerfile builds it.

Docker cannot run here, so this test builds the image's file tree itself, from
the Dockerfile's own lines, so that the two cannot drift: the build stage's
`uv sync` (with its ENV, its bind mounts and nothing else of the project), only
the paths its COPY lines name (filtered like `.dockerignore` filters the
context), the runtime stage's WORKDIR, ENV, USER, EXPOSE, HEALTHCHECK and CMD.
An instruction this test does not know fails it: a new line in the Dockerfile
must be taught here (and to `tests/support/dockerfile.py`, which reads the
lines) before it ships.

Every command runs as the image runs it: as the Dockerfile's user (uid 10001,
through `setpriv`), in a mount namespace whose root file system is read-only
(what Kubernetes' `readOnlyRootFilesystem` does), with only the image's
environment plus the settings a deployment gives. The base image's Python is
stood in for by a copy of the interpreter the project pins (this machine's may
sit where the unprivileged user cannot reach it).
"""

import contextlib
import json
import os
import selectors
import shutil
import socket
import socketserver
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.databases import Databases
from tests.support.dockerfile import Image, parse
from tests.support.ports import free_port
from tests.support.project import Project, Renders, outside_pytest_tmp
from tests.support.service import new_secret_keys, stop_process_group

# Docker and SMTP: the console e-mail backend refuses to run in production.
COMBINATION = "defaults"
START_TIMEOUT_SECONDS = 60.0
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "a long production password"  # noqa: S105 (a test user's)


def test_the_dockerfile_says_what_the_test_relies_on(rendered: Renders) -> None:
    image = parse((rendered[COMBINATION].path / "Dockerfile").read_text())

    assert image.sync == ["uv", "sync", "--locked", "--no-dev", "--no-install-project"]
    assert image.uid == image.gid == image.created_uid == 10001
    assert image.env["ENVIRONMENT"] == "production"
    # The CMD serves on PORT, the one exposed and the one the health check asks, on every
    # address of the container.
    assert image.cmd == ["python", "-m", "commands.serve"]
    assert image.env["PORT"] == str(image.port)
    assert image.env["HOST"] == "0.0.0.0"  # noqa: S104 (the container's every address)
    assert f"127.0.0.1:{image.port}/api/health/live" in " ".join(image.healthcheck)


def allowed_by_dockerignore(project: Path, source: str) -> bool:
    """The context is an allow-list (`*`, then `!path`): is `source` in it?"""
    lines = (project / ".dockerignore").read_text().splitlines()
    return "*" in lines and any(line.rstrip("/") == f"!{source.rstrip('/')}" for line in lines)


def place(project: Path, source: str, destination: Path) -> None:
    """COPY one path of the context, without what `.dockerignore` leaves out."""
    assert allowed_by_dockerignore(project, source), f"{source} is not in the build context"
    origin = project / source
    if origin.is_dir():
        shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, destination)


def link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def base_python(project: Path, root: Path) -> Path:
    """The installation of the interpreter the project pins, where the image's user can run it.

    In place when every folder above it lets others through; otherwise (pyenv
    under a private home) a copy, hard-linked where the file system allows.
    """
    found = subprocess.run(
        ["uv", "python", "find"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    prefix = Path(
        subprocess.run(
            [found, "-c", "import sys; print(sys.base_prefix)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    if all(folder.stat().st_mode & stat.S_IXOTH for folder in [prefix, *prefix.parents]):
        return prefix
    base = root / "base-python"
    shutil.copytree(prefix, base, copy_function=link_or_copy, symlinks=True)
    return base


def on_host(value: str, root: Path, workdir: str) -> str:
    """An environment value with the image's paths moved under `root`."""
    return os.pathsep.join(
        f"{root}{part}" if part == workdir or part.startswith(f"{workdir}/") else part
        for part in value.split(os.pathsep)
    )


@dataclass(frozen=True)
class Tree:
    """The image's files under `root`, and the Python standing in for the base image's."""

    root: Path
    image: Image
    base: Path

    @property
    def workdir(self) -> Path:
        return self.root / self.image.workdir.lstrip("/")

    def env(self, **settings: str) -> dict[str, str]:
        image_env = {
            name: on_host(value, self.root, self.image.workdir)
            for name, value in self.image.env.items()
        }
        # The base image's library path, where its Python finds libpython.
        return {**image_env, "LD_LIBRARY_PATH": str(self.base / "lib"), **settings}

    def command(self, argv: list[str], **settings: str) -> list[str]:
        """`argv` as the image's user, on a read-only root, with only the image's environment.

        `env -i` sets the environment after `sudo` (needed where the tests do not
        run as root), which would drop LD_LIBRARY_PATH and reset PATH; the
        program is looked up on the image's PATH, as Docker does.
        """
        env = self.env(**settings)
        program = shutil.which(argv[0], path=env["PATH"])
        assert program, f"{argv[0]} is not on the image's PATH"
        as_user = [
            *("setpriv", f"--reuid={self.image.uid}", f"--regid={self.image.gid}"),
            *("--clear-groups", "--", program, *argv[1:]),
        ]
        read_only = 'mount -o remount,bind,ro / && exec "$@"'
        namespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", read_only, "sh"]
        sudo = ["sudo", "-n"] if os.geteuid() != 0 else []
        assignments = [f"{name}={value}" for name, value in env.items()]
        return [*sudo, "env", "-i", *assignments, *namespace, *as_user]


def build_venv(project: Project, image: Image, root: Path) -> Path:
    """The build stage's `uv sync`: its ENV, its bind mounts, in its work folder."""
    base = base_python(project.path, root)
    workdir = root / image.build_workdir.lstrip("/")
    workdir.mkdir(parents=True)
    for target, source in image.binds.items():
        place(project.path, source, workdir / target)
    build_env = {
        name: on_host(value, root, image.build_workdir) for name, value in image.build_env.items()
    }
    python = base / "bin" / f"python{project.answers['python_version']}"
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env.update(build_env, UV_PYTHON=str(python), LD_LIBRARY_PATH=str(base / "lib"))
    subprocess.run(image.sync, cwd=workdir, env=env, check=True, capture_output=True)
    for target in image.binds:
        (workdir / target).unlink()  # bind mounts leave nothing behind
    return base


def build_tree(project: Path, image: Image, built: Tree, root: Path) -> Tree:
    """The image's files: the built virtualenv, then exactly the COPY lines' paths."""
    workdir = root / image.workdir.lstrip("/")
    workdir.mkdir(parents=True)
    for entry in built.workdir.iterdir():  # what `uv sync` made: the virtualenv
        (workdir / entry.name).symlink_to(entry)
    for source, destination in image.copies:
        target = workdir / destination
        place(project, source, target / Path(source).name if destination.endswith("/") else target)
    for folder in [root, *root.rglob("*")]:
        if folder.is_dir() and not folder.is_symlink():
            folder.chmod(0o755)  # root-owned, readable, not writable by the image's user
    return Tree(root, image, built.base)


@pytest.fixture(scope="module")
def built(rendered: Renders) -> Iterator[Tree]:
    """The build stage's virtualenv, shared by the trees this module builds."""
    project = rendered[COMBINATION]
    image = parse((project.path / "Dockerfile").read_text())
    with outside_pytest_tmp("image-build-") as root:
        root.chmod(0o755)
        base = build_venv(project, image, root)
        yield Tree(root, image, base)


class UnixSocketRelay(socketserver.ThreadingTCPServer):
    """A loopback TCP port relayed to PostgreSQL's Unix socket, for the image's user.

    A container reaches its database over the network, and the tests' embedded
    server listens on a socket in a folder that only its own user may enter.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        super().__init__(("127.0.0.1", 0), RelayHandler)


class RelayHandler(socketserver.BaseRequestHandler):
    server: UnixSocketRelay

    def handle(self) -> None:
        with socket.socket(socket.AF_UNIX) as upstream:
            upstream.connect(self.server.socket_path)
            peers = {self.request: upstream, upstream: self.request}
            with selectors.DefaultSelector() as selector:
                for end in peers:
                    selector.register(end, selectors.EVENT_READ)
                while True:
                    for key, _ in selector.select():
                        data = key.fileobj.recv(65536)
                        if not data:
                            return
                        peers[key.fileobj].sendall(data)


@contextlib.contextmanager
def reachable_over_tcp(url: str) -> Iterator[str]:
    """`url`, or when it names a Unix socket folder (`?host=/...`), a relay to it."""
    parts = urlsplit(url)
    folder = parse_qs(parts.query).get("host", [""])[0]
    if not folder.startswith("/"):
        yield url
        return
    with UnixSocketRelay(f"{folder}/.s.PGSQL.{parts.port or 5432}") as relay:
        thread = threading.Thread(target=relay.serve_forever, daemon=True)
        thread.start()
        try:
            port = relay.server_address[1]
            yield parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}", query="").geturl()
        finally:
            relay.shutdown()


def deployment_settings(database_url: str) -> dict[str, str]:
    """What a deployment adds to the image's environment: the database, mail server, secrets."""
    return {
        "DATABASE_URL": database_url,
        **new_secret_keys(),
        # A closed port: e-mails fail at once.
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "9",
    }


def run(tree: Tree, argv: list[str], settings: dict[str, str]) -> str:
    result = subprocess.run(
        tree.command(argv, **settings),
        cwd=tree.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"`{' '.join(argv)}` failed in the image:\n{output}"
    return output


@contextlib.contextmanager
def serving(tree: Tree, settings: dict[str, str], log: Path) -> Iterator[str]:
    """The image's CMD, on a free port (where `docker run -p` would map the image's)."""
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            tree.command(tree.image.cmd, **settings, PORT=str(port)),
            cwd=tree.workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the image's CMD exited:\n{log.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base_url}/api/health/ready", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"not ready:\n{log.read_text()}"
            time.sleep(0.2)
        yield base_url
    finally:
        stop_process_group(process)


def exercise(tree: Tree, databases: Databases, log: Path) -> None:
    """Migrate, create the superuser, serve, log in, ask who is logged in, health-check."""
    with reachable_over_tcp(databases.url) as database_url:
        settings = deployment_settings(database_url)
        run(tree, ["alembic", "upgrade", "head"], settings)
        created = run(
            tree,
            ["python", "-m", "commands.create_superuser", ADMIN_EMAIL],
            {**settings, "SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        )
        assert f"Superuser {ADMIN_EMAIL} created" in created
        with serving(tree, settings, log) as base_url, httpx.Client(base_url=base_url) as client:
            assert client.get("/api/health/ready").json() == {"status": "ok", "database": "ok"}
            login = client.post(
                "/api/auth/login", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
            me = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            assert me.json()["email"] == ADMIN_EMAIL
            assert me.json()["is_superuser"] is True
            port = base_url.rsplit(":", 1)[1]
            healthcheck = [
                word.replace(f"127.0.0.1:{tree.image.port}/", f"127.0.0.1:{port}/")
                for word in tree.image.healthcheck
            ]
            run(tree, healthcheck, settings)
    # Production logs JSON lines only, uvicorn's included.
    for line in log.read_text().splitlines():
        assert isinstance(json.loads(line), dict), line


def test_the_image_migrates_creates_a_superuser_serves_and_passes_its_healthcheck(
    rendered: Renders, built: Tree, databases: Databases, tmp_path: Path
) -> None:
    project = rendered[COMBINATION]
    with outside_pytest_tmp("image-") as root:
        tree = build_tree(project.path, built.image, built, root)

        exercise(tree, databases, tmp_path / "server.log")

        # As the image's user, on a root file system nothing can write to: not even /tmp.
        probe = "import os, tempfile; print(os.getuid(), os.getgid()); tempfile.mkstemp()"
        unwritable = r"(?s)10001 10001\n.*No usable temporary directory"
        with pytest.raises(AssertionError, match=unwritable):
            run(tree, ["python", "-c", probe], {})

        assert sorted(entry.name for entry in tree.workdir.iterdir()) == sorted(
            [".venv", *(Path(source).name for source, _ in built.image.copies)]
        )


def drop_copy_of_commands(project: Path) -> str:
    dockerfile = (project / "Dockerfile").read_text()
    assert "COPY commands ./commands\n" in dockerfile
    (project / "Dockerfile").write_text(dockerfile.replace("COPY commands ./commands\n", ""))
    return "No module named 'commands'"


def import_a_dev_dependency(project: Path) -> str:
    main = project / "app" / "main.py"
    main.write_text(f"import pytest  # noqa: F401\n{main.read_text()}")
    return "No module named 'pytest'"


@pytest.mark.parametrize("mistake", [drop_copy_of_commands, import_a_dev_dependency])
def test_a_file_left_out_or_a_dev_only_import_fails_the_image(
    rendered: Renders,
    built: Tree,
    databases: Databases,
    tmp_path: Path,
    mistake: Callable[[Path], str],
) -> None:
    original = rendered[COMBINATION].path
    project = tmp_path / "project"
    shutil.copytree(original, project, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    message = mistake(project)
    image = parse((project / "Dockerfile").read_text())

    with outside_pytest_tmp("image-") as root:
        tree = build_tree(project, image, built, root)

        with pytest.raises(AssertionError) as failure:
            exercise(tree, databases, tmp_path / "server.log")

    log = tmp_path / "server.log"
    assert message in str(failure.value) + (log.read_text() if log.exists() else "")
