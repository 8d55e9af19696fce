"""What a rendered Dockerfile says about its image, read from its own lines."""

import json
import re
import shlex
from dataclasses import dataclass, field

# The environment of the python:*-slim base images before the Dockerfile's ENV.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


@dataclass
class Image:
    """What the Dockerfile says about its image."""

    build_env: dict[str, str] = field(default_factory=dict)
    build_workdir: str = "/"
    # The build stage's `uv sync` command and the files bind-mounted for it.
    sync: list[str] = field(default_factory=list)
    binds: dict[str, str] = field(default_factory=dict)
    # (source in the build context, destination in the build stage)
    copies: list[tuple[str, str]] = field(default_factory=list)
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=lambda: dict(BASE_ENV))
    uid: int = 0
    gid: int = 0
    created_uid: int | None = None
    port: int = 0
    healthcheck: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, continuation lines joined, comments dropped."""
    found: list[list[tuple[str, str]]] = []
    for line in re.sub(r"\\\n", " ", dockerfile).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            found.append([])
        elif found:
            found[-1].append((keyword.upper(), arguments.strip()))
    return found


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda match: env.get(match[1], ""), value)


def apply_env(arguments: str, env: dict[str, str]) -> None:
    for assignment in shlex.split(arguments):
        name, _, value = assignment.partition("=")
        env[name] = expand(value, env)


def parse(dockerfile: str) -> Image:
    """The build stage and the runtime stage: the first and the last."""
    build, *_, runtime = stages(dockerfile)
    image = Image()
    for keyword, arguments in build:
        words = shlex.split(arguments)
        if keyword == "ENV":
            apply_env(arguments, image.build_env)
        elif keyword == "WORKDIR":
            image.build_workdir = arguments
        elif keyword == "RUN" and "uv sync" in arguments:
            mounts = [w.removeprefix("--mount=") for w in words if w.startswith("--mount=")]
            image.sync = [word for word in words if not word.startswith("--mount=")]
            for mount in mounts:
                options = dict(option.split("=", 1) for option in mount.split(","))
                if options["type"] == "bind":
                    image.binds[options["target"]] = options["source"]
        elif keyword == "COPY" and words[0].startswith("--from=ghcr.io/astral-sh/uv:"):
            continue  # uv itself: this machine's uv stands in for it
        elif keyword == "COPY" and not words[0].startswith("--"):
            *sources, destination = words
            image.copies += [(source, destination) for source in sources]
        else:
            raise AssertionError(f"the build stage has `{keyword} {arguments}`: teach this test")
    for keyword, arguments in runtime:
        words = shlex.split(arguments)
        if keyword == "RUN" and "useradd" in arguments:
            image.created_uid = int(words[words.index("--uid") + 1])
            # Docker sets HOME from the user's entry in /etc/passwd.
            image.env["HOME"] = words[words.index("--home-dir") + 1]
        elif keyword == "WORKDIR":
            image.workdir = arguments
        elif keyword == "COPY" and words[0] == "--from=build":
            # The runtime holds the build stage's work folder, whole: nothing else.
            assert words[1:] == [image.build_workdir, image.workdir], arguments
        elif keyword == "ENV":
            apply_env(arguments, image.env)
        elif keyword == "USER":
            uid, _, gid = arguments.partition(":")
            image.uid, image.gid = int(uid), int(gid or uid)
        elif keyword == "EXPOSE":
            image.port = int(arguments)
        elif keyword == "HEALTHCHECK":
            image.healthcheck = json.loads(arguments.split(" CMD ", 1)[1])
        elif keyword == "CMD":
            image.cmd = json.loads(arguments)
        else:
            raise AssertionError(f"the runtime stage has `{keyword} {arguments}`: teach this test")
    return image
