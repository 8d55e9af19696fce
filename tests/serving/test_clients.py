"""Clients generated from a render's openapi.json by their own tools, used against a real uvicorn.

The rendered README's "API contract" gives one command for each: openapi-python-client
(PyPI, through uvx) and @hey-api/openapi-ts (npm, through npx). This runs those commands (the
Python one refusing warnings), type-checks each client strictly (mypy; tsc), and runs one flow
with each against the defaults' render, served in production settings on a fresh migrated
database: register, a refused login, log in, refresh, create a post, list posts, log out, and
the refresh token refused after logout. Both clients use one server.

Versions: the generators' are the README's; the Python client runs on httpx and attrs and is
checked by mypy, the TypeScript one compiled by TypeScript, at the versions below. Each comes
from its registry once, then from uv's and npm's caches.
"""

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import httpx

from tests.support.project import Project, project_env
from tests.support.service import migrated_database, new_secret_keys, serve

HTTPX = "0.28.1"  # what openapi-python-client 0.29 allows: <0.29
ATTRS = "26.1.0"
MYPY = "2.4.1"
TYPESCRIPT = "6.0.3"  # openapi-ts imports the compiler API, which TypeScript 7's package lacks
NODE = (20, 19)  # @hey-api/openapi-ts 0.95 needs 20.19; 0.96 and later need 22
PASSWORD = "correct-Horse-battery-9"  # noqa: S105 (the test users' password)
COMMAND_TIMEOUT_SECONDS = 300


def client_commands(project: Project) -> tuple[list[str], list[str]]:
    """The README's commands that generate the Python and the TypeScript client."""
    readme = (project.path / "README.md").read_text()
    section = readme.split("## API contract", 1)[1].split("\n## ", 1)[0]
    lines = [
        line
        for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
        for line in block.splitlines()
    ]
    [python] = [shlex.split(line) for line in lines if line.startswith("uvx openapi-python-client")]
    [typescript] = [shlex.split(line) for line in lines if line.startswith("npx ")]
    return python, typescript


def run(command: list[str], cwd: Path) -> str:
    """Run `command` in `cwd`; fail the test with its output if it fails."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env=project_env(npm_config_update_notifier="false"),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"`{shlex.join(command)}` failed:\n{output}"
    return output


def require_node() -> None:
    """Node.js and npm, new enough for the README's openapi-ts: fail, never skip, without."""
    wanted = f"Node.js {NODE[0]}.{NODE[1]} or later and npm"
    missing = [tool for tool in ("node", "npm", "npx") if shutil.which(tool) is None]
    assert not missing, (
        f"{', '.join(missing)} not found: the TypeScript client test needs {wanted} "
        "(Debian: `apt-get install nodejs npm`)"
    )
    version = run(["node", "--version"], Path.cwd()).strip()
    found = tuple(int(part) for part in version.lstrip("v").split(".")[:2])
    assert found >= NODE, f"node is {version}: the TypeScript client test needs {wanted}"


PYTHON_FLOW = """\
import sys

from {package}.api.auth import login, logout, refresh, register
from {package}.api.posts import create_post, list_posts
from {package}.client import AuthenticatedClient, Client
from {package}.models import (
    BodyLogin,
    ErrorModel,
    PostCreate,
    PostRead,
    RefreshRequest,
    TokensResponse,
    UserCreate,
    UserRead,
)

base_url, email, password = sys.argv[1:]

with Client(base_url=base_url) as client:
    user = register.sync(client=client, body=UserCreate(email=email, password=password))
    assert isinstance(user, UserRead), user
    assert user.email == email, user

    refused = login.sync_detailed(client=client, body=BodyLogin(username=email, password="no"))
    assert refused.status_code == 400, refused
    assert isinstance(refused.parsed, ErrorModel), refused
    assert refused.parsed.detail == "LOGIN_BAD_CREDENTIALS", refused.parsed

    tokens = login.sync(client=client, body=BodyLogin(username=email, password=password))
    assert isinstance(tokens, TokensResponse), tokens
    renewed = refresh.sync(client=client, body=RefreshRequest(refresh_token=tokens.refresh_token))
    assert isinstance(renewed, TokensResponse), renewed
    assert renewed.refresh_token != tokens.refresh_token

with AuthenticatedClient(base_url=base_url, token=renewed.access_token) as authenticated:
    post = create_post.sync(client=authenticated, body=PostCreate(title="Hello", body="Python"))
    assert isinstance(post, PostRead), post
    assert (post.title, post.author.email) == ("Hello", email), post
    posts = list_posts.sync(client=authenticated)
    assert isinstance(posts, list), posts
    assert [(item.id, item.body) for item in posts] == [(post.id, "Python")], posts

    assert logout.sync_detailed(client=authenticated).status_code == 204

with Client(base_url=base_url) as client:
    spent = RefreshRequest(refresh_token=renewed.refresh_token)
    assert refresh.sync_detailed(client=client, body=spent).status_code == 401

print("the Python client did it all")
"""

# Strict, but for one error in the generator's own client.py (whatever the contract): it
# hands `*args: object` to httpx's typed `__exit__`.
MYPY_CONFIG = """\
[mypy]
strict = True

[mypy-{package}.client]
disable_error_code = arg-type
"""

TYPESCRIPT_FLOW = """\
import {{ createPost, listPosts, login, logout, refresh, register }} from './{client}';
import {{ createClient }} from './{client}/client';

const baseUrl = {base_url};
const email = {email};
const password = {password};

function check(condition: boolean, what: string, value?: unknown): asserts condition {{
  if (!condition) {{
    throw new Error(`${{what}}: ${{JSON.stringify(value)}}`);
  }}
}}

async function main(): Promise<void> {{
  const client = createClient({{ baseUrl }});

  const user = await register({{ client, body: {{ email, password }} }});
  check(user.response.status === 201, 'register', user.error);
  check(user.data?.email === email, 'the registered user', user.data);

  const refused = await login({{ client, body: {{ username: email, password: 'no' }} }});
  check(refused.response.status === 400, 'a wrong password', refused.error);
  check(refused.error?.detail === 'LOGIN_BAD_CREDENTIALS', 'its detail', refused.error);

  const tokens = await login({{ client, body: {{ username: email, password }} }});
  check(tokens.data !== undefined, 'login', tokens.error);
  const renewed = await refresh({{ client, body: {{ refresh_token: tokens.data.refresh_token }} }});
  check(renewed.data !== undefined, 'refresh', renewed.error);
  check(renewed.data.refresh_token !== tokens.data.refresh_token, 'a new refresh token');

  const authenticated = createClient({{ baseUrl, auth: renewed.data.access_token }});
  const post = await createPost({{
    client: authenticated,
    body: {{ title: 'Hello', body: 'TypeScript' }},
  }});
  check(post.response.status === 201 && post.data !== undefined, 'create a post', post.error);
  check(post.data.author.email === email, 'its author', post.data);
  const posts = await listPosts({{ client: authenticated }});
  check(posts.data !== undefined, 'list posts', posts.error);
  const listed = posts.data.map((item) => [item.id, item.body]);
  check(JSON.stringify(listed) === JSON.stringify([[post.data.id, 'TypeScript']]), 'posts', listed);

  const out = await logout({{ client: authenticated }});
  check(out.response.status === 204, 'logout', out.error);
  const spent = await refresh({{ client, body: {{ refresh_token: renewed.data.refresh_token }} }});
  check(spent.response.status === 401, 'refresh after logout', spent.error);
  console.log('the TypeScript client did it all');
}}

// A failed check rejects: Node prints it and exits with 1.
void main();
"""

TSCONFIG = {
    "compilerOptions": {
        "strict": True,
        "target": "es2022",
        "module": "nodenext",
        "moduleResolution": "nodenext",
        "lib": ["es2022", "dom"],
        "types": [],
        "rootDir": ".",
        "outDir": "dist",
        "noEmitOnError": True,
        "skipLibCheck": True,  # TypeScript's own lib.*.d.ts; the client and the flow are checked
    },
    "files": ["flow.ts"],
}


def install_typescript_tools(scratch: Path, typescript_command: list[str]) -> None:
    """The README's openapi-ts and TypeScript, where npx finds them from `scratch/contract`."""
    openapi_ts = next(arg for arg in typescript_command if arg.startswith("@hey-api/openapi-ts@"))
    package = {
        "private": True,
        "type": "commonjs",  # what tsc emits: the generated imports have no file extensions
        "devDependencies": {
            "@hey-api/openapi-ts": openapi_ts.rpartition("@")[2],
            "typescript": TYPESCRIPT,
        },
    }
    (scratch / "package.json").write_text(json.dumps(package))
    run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"], scratch)


def check_python_client(
    command: list[str], scratch: Path, base_url: str, python_version: str
) -> None:
    run([*command, "--fail-on-warning"], scratch / "contract")
    [client] = {path.parent.parent for path in scratch.glob("*/*/py.typed")}
    [package] = [path.parent.name for path in client.glob("*/py.typed")]
    (client / "flow.py").write_text(PYTHON_FLOW.format(package=package))
    (client / "mypy.ini").write_text(MYPY_CONFIG.format(package=package))
    uv_run = ["uv", "run", "--no-project", "--python", python_version]
    for requirement in (f"httpx=={HTTPX}", f"attrs=={ATTRS}", f"mypy=={MYPY}"):
        uv_run += ["--with", requirement]

    run([*uv_run, "mypy", "--config-file", "mypy.ini", package, "flow.py"], client)
    flow = run([*uv_run, "python", "flow.py", base_url, "python@example.com", PASSWORD], client)
    assert "did it all" in flow


def check_typescript_client(command: list[str], scratch: Path, base_url: str) -> None:
    run(command, scratch / "contract")
    [client] = {path.parent for path in scratch.glob("*/sdk.gen.ts")}
    source = TYPESCRIPT_FLOW.format(
        client=client.name,
        base_url=json.dumps(base_url),
        email=json.dumps("typescript@example.com"),
        password=json.dumps(PASSWORD),
    )
    (scratch / "flow.ts").write_text(source)
    (scratch / "tsconfig.json").write_text(json.dumps(TSCONFIG))

    run([str(scratch / "node_modules" / ".bin" / "tsc"), "--project", "tsconfig.json"], scratch)
    assert "did it all" in run(["node", str(scratch / "dist" / "flow.js")], scratch)


def test_generated_clients_work_against_a_served_render(project: Project, scratch: Path) -> None:
    require_node()
    python_command, typescript_command = client_commands(project)
    # The README's commands run here, as in the project, and write their clients beside it.
    (scratch / "contract").mkdir()
    shutil.copy(project.path / "openapi.json", scratch / "contract")
    install_typescript_tools(scratch, typescript_command)
    settings = {
        "ENVIRONMENT": "production",
        **new_secret_keys(),
        # E-mails (registration's) go nowhere: a closed port fails at once.
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "9",
    }

    with migrated_database(project, settings) as database:
        env = {**settings, "DATABASE_URL": database.url}
        with serve(project, env, scratch / "uvicorn.log") as service:
            served = httpx.get(f"{service.base_url}/openapi.json", timeout=10).json()
            assert served == json.loads((scratch / "contract" / "openapi.json").read_text())

            python_version = project.answers["python_version"]
            check_python_client(python_command, scratch, service.base_url, python_version)
            check_typescript_client(typescript_command, scratch, service.base_url)
