"""The serving benchmark: its data, its endpoints, and one pass per server configuration."""

import json
import secrets
import statistics
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx

from bench import instructions, load
from bench.database import connections_opened
from bench.load import Load, LoadResult, Request
from bench.project import run
from bench.server import READY_TIMEOUT_SECONDS, PeakMemory, serve
from bench.sink import otlp_sink
from bench.stats import Results
from tests.support.databases import Databases
from tests.support.project import project_env

# Logins rotate over several users: the failed-login limit counts a login in
# progress against its e-mail address (10 at a time by default), and 32
# connections on one address would measure that limit instead of Argon2.
LOGIN_USERS = 8
EMAILS = [f"bench{number}@example.com" for number in range(LOGIN_USERS)]
EMAIL = EMAILS[0]
# The project's own command, for each user in one process.
CREATE_USERS = (
    "import asyncio, os, sys\n"
    "from commands.create_superuser import main\n"
    "for email in sys.argv[1:]:\n"
    "    if asyncio.run(main(email, os.environ['SUPERUSER_PASSWORD'])):\n"
    "        sys.exit(1)\n"
)
# The reference points, served by the rendered project's FastAPI and asyncpg.
REFERENCE_APP = Path(__file__).with_name("reference_app.py")
REFERENCE = "Reference, 1 worker"
COUNTED = "Instructions, 1 worker, one request at a time"
REFERENCE_SCENARIOS = [
    ("GET /bare: FastAPI alone, no database", Request("GET", "/bare")),
    ("GET /raw: one asyncpg query, no ORM", Request("GET", "/raw")),
]
# The cost of the rendered app's observability, side by side on GET /api/users/me:
# the settings each configuration adds (the OTLP endpoint is the local sink's).
OBSERVED = "Observability, 1 worker · GET /api/users/me"
NEITHER = "neither"
METRICS = "metrics on"
TRACING = "tracing on (100 % sampled, OTLP to a local sink)"
# As .env.example and the Kubernetes ConfigMap advise for production.
TRACING_SAMPLED = "tracing on (10 % sampled, parentbased_traceidratio, OTLP to a local sink)"
# What each may add to the instructions per request of NEITHER (issue 16); tracing's cost
# is reported without a target (issue 24 withdrew 25 % at 100 %: the OTLP encoder's share).
OBSERVABILITY_TARGETS: dict[str, float | None] = {
    METRICS: 0.10,
    TRACING: None,
    TRACING_SAMPLED: None,
}
# The batch exporter sends every few seconds: under callgrind, once in about 120
# requests, so a window of 100 has an export in it or not. Their cost is compared
# as the mean of nine windows, which spreads the exports as serving does.
OBSERVED_WINDOWS = 9


def observability_settings(otlp_endpoint: str) -> dict[str, dict[str, str]]:
    return {
        NEITHER: {},
        METRICS: {"METRICS_TOKEN": secrets.token_urlsafe(32)},
        TRACING: {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
        },
        TRACING_SAMPLED: {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
    }


# Rows the post list returns: more exist, so that LIMIT has to choose.
POSTS = 25
LIST_LIMIT = 20


@dataclass(frozen=True)
class Options:
    seconds: float
    warmup_seconds: float
    threads: int
    connections: int
    # The concurrent login load beside GET /api/users/me: enough to keep Argon2 busy.
    login_connections: int = 4


@dataclass(frozen=True)
class Scenario:
    label: str
    request: Request
    authenticated: bool = True


class Serving:
    """The serving project, its database and the user every request acts as."""

    def __init__(self, project: Path, databases: Databases, log: Path, connections: int) -> None:
        self.project = project
        self.databases = databases
        self.log = log
        self.password = secrets.token_urlsafe(16)
        self.env = {
            "ENVIRONMENT": "production",
            "DATABASE_URL": databases.url,
            # A pool as large as wrk's concurrency, as the rendered README sizes one for a
            # worker that serves that many requests at once; the default (20) is sized
            # for max_connections on a 4-core host, and would measure waits for it.
            "DATABASE_POOL_SIZE": str(connections),
            # Required in production; no request measured sends mail.
            "MAIL_SERVER": "127.0.0.1",
        }
        self.login = Request(
            "POST",
            "/api/auth/login",
            body="\n".join(
                urlencode({"username": email, "password": self.password}) for email in EMAILS
            ),
            content_type="application/x-www-form-urlencoded",
        )
        self.users_me = Request("GET", "/api/users/me")
        self.scenarios = [
            Scenario("GET /api/health", Request("GET", "/api/health"), authenticated=False),
            Scenario("GET /api/users/me", self.users_me),
            Scenario(
                f"GET /api/posts/?limit={LIST_LIMIT}",
                Request("GET", f"/api/posts/?limit={LIST_LIMIT}"),
            ),
            Scenario(
                "POST /api/posts/",
                Request(
                    "POST",
                    "/api/posts/",
                    body=json.dumps({"title": "Benchmark", "body": "Written under load."}),
                    content_type="application/json",
                ),
            ),
            # A registered address: the reset e-mail's job is enqueued in the request's
            # transaction (no worker runs: the jobs wait, as a queue's rows do).
            Scenario(
                "POST /api/auth/forgot-password",
                Request(
                    "POST",
                    "/api/auth/forgot-password",
                    body=json.dumps({"email": EMAILS[0]}),
                    content_type="application/json",
                ),
                authenticated=False,
            ),
        ]

    def prepare(self) -> None:
        """Migrate, and create the users with the project's own command."""
        env = project_env(**self.env, SUPERUSER_PASSWORD=self.password)
        run(["uv", "run", "--locked", "alembic", "upgrade", "head"], cwd=self.project, env=env)
        command = ["uv", "run", "--locked", "python", "-c", CREATE_USERS, *EMAILS]
        run(command, cwd=self.project, env=env)

    def log_in_and_seed(self, base_url: str) -> str:
        """A bearer token, and at least POSTS posts for the list to choose from."""
        with httpx.Client(base_url=base_url, timeout=30) as client:
            response = client.post(
                self.login.path, data={"username": EMAIL, "password": self.password}
            )
            response.raise_for_status()
            client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
            existing = client.get("/api/posts/", params={"limit": POSTS}).raise_for_status()
            for number in range(len(existing.json()), POSTS):
                post = {"title": f"Post {number}", "body": f"Body of post {number}."}
                client.post("/api/posts/", json=post).raise_for_status()
            return str(client.headers["Authorization"])

    def run_configuration(
        self, name: str, workers: int, options: Options, results: Results, run_number: int
    ) -> None:
        with serve(self.project, workers, self.env, self.log) as (base_url, monitor):
            authorization = self.log_in_and_seed(base_url)
            measured = Measured(self, name, base_url, monitor, options, results, run_number)
            for scenario in self.scenarios:
                measured.scenario(scenario, authorization)
            # Logins at full load last: the hashes they leave queued would slow what follows.
            measured.users_me_during_logins(authorization)
            measured.login_alone()
        results.add(f"{name} · server peak RSS, all processes", "MiB", monitor.peak_bytes / 2**20)
        results.add(f"{name} · wrk's CPU use, busiest run", "% of a core", measured.wrk_peak * 100)
        results.add(f"{name} · failed requests, all of the above", "requests", measured.failed)

    def run_observability(self, options: Options, results: Results, run_number: int) -> None:
        """GET /api/users/me with metrics on, with tracing on, with neither: one after the other."""
        with otlp_sink() as sink:
            for name, settings in observability_settings(sink.endpoint).items():
                with serve(self.project, 1, {**self.env, **settings}, self.log) as (url, monitor):
                    authorization = self.log_in_and_seed(url)
                    label = f"{OBSERVED} · {name}"
                    measured = Measured(self, label, url, monitor, options, results, run_number)
                    measured.measure("load", self.users_me, authorization)
            if sink.exports == 0:
                raise RuntimeError("the traced service exported nothing to the OTLP sink")

    def count_observability_instructions(self, dumps: Path, results: Results) -> None:
        """Instructions per request of GET /api/users/me in each configuration, and the cost."""
        wrapper = instructions.under_callgrind(dumps)
        timeout = instructions.READY_TIMEOUT_SECONDS
        means: dict[str, float] = {}
        with otlp_sink() as sink:
            for name, settings in observability_settings(sink.endpoint).items():
                env = {**self.env, **settings}
                service = serve(
                    self.project, 1, env, self.log, wrapper=wrapper, ready_timeout=timeout
                )
                with service as (base_url, monitor):
                    authorization = self.log_in_and_seed(base_url)
                    with instructions.counting(monitor.process.pid, base_url, dumps) as counter:
                        counts = counter.per_request(
                            self.users_me, authorization, windows=OBSERVED_WINDOWS
                        )
                results.extend(f"{COUNTED} · {OBSERVED} · {name}", instructions.UNIT, counts)
                means[name] = statistics.mean(counts)
        for name, target in OBSERVABILITY_TARGETS.items():
            added = means[name] / means[NEITHER] - 1
            label = f"{COUNTED} · {OBSERVED} · {name}: added, mean"
            if target is not None:
                label += f" (target ≤ {target:.0%})"
            results.add(label, "%", added * 100)

    def reference_server(
        self,
        pool_size: int,
        wrapper: tuple[str, ...] = (),
        ready_timeout: float = READY_TIMEOUT_SECONDS,
    ) -> AbstractContextManager[tuple[str, PeakMemory]]:
        """The issue's reference points (bench/reference_app.py), served on 1 worker."""
        env = {
            "REFERENCE_DATABASE_URL": self.databases.url.replace("+asyncpg", ""),
            "REFERENCE_POOL_SIZE": str(pool_size),
        }
        app = (
            "--app-dir",
            str(REFERENCE_APP.parent),
            f"{REFERENCE_APP.stem}:app",
            # As in the rendered app, whose own access line replaces uvicorn's.
            "--no-access-log",
        )
        return serve(
            self.project,
            1,
            env,
            self.log,
            app=app,
            ready_path="/bare",
            wrapper=wrapper,
            ready_timeout=ready_timeout,
        )

    def run_reference(self, options: Options, results: Results, run_number: int) -> None:
        """The reference points under load, on this machine in this run."""
        with self.reference_server(options.connections) as (base_url, monitor):
            measured = Measured(self, REFERENCE, base_url, monitor, options, results, run_number)
            for label, request in REFERENCE_SCENARIOS:
                measured.measure(label, request, "")

    def count_instructions(self, dumps: Path, results: Results) -> None:
        """Instructions per request of each scenario and reference point (bench/instructions.py).

        Logins are left out: Argon2's count would say nothing about the service.
        """
        wrapper = instructions.under_callgrind(dumps)
        timeout = instructions.READY_TIMEOUT_SECONDS
        service = serve(self.project, 1, self.env, self.log, wrapper=wrapper, ready_timeout=timeout)
        with service as (base_url, monitor):
            authorization = self.log_in_and_seed(base_url)
            with instructions.counting(monitor.process.pid, base_url, dumps) as counter:
                for scenario in self.scenarios:
                    counts = counter.per_request(
                        scenario.request, authorization if scenario.authenticated else ""
                    )
                    results.extend(f"{COUNTED} · {scenario.label}", instructions.UNIT, counts)
        # One connection at a time: the pool needs no more.
        reference = self.reference_server(1, wrapper, timeout)
        with (
            reference as (base_url, monitor),
            instructions.counting(monitor.process.pid, base_url, dumps) as counter,
        ):
            for label, request in REFERENCE_SCENARIOS:
                counts = counter.per_request(request, "")
                results.extend(f"{COUNTED} · reference: {label}", instructions.UNIT, counts)


@dataclass
class Measured:
    """One server configuration's measurements, recorded into `results`."""

    serving: Serving
    name: str
    base_url: str
    monitor: PeakMemory
    options: Options
    results: Results
    run_number: int
    wrk_peak: float = 0.0
    failed: int = 0

    def load(self, connections: int, seconds: float, authorization: str = "") -> Load:
        return Load(min(self.options.threads, connections), connections, seconds, authorization)

    def measure(
        self,
        label: str,
        request: Request,
        authorization: str,
        *,
        warm_up: bool = True,
        cpu_per_request: bool = True,
    ) -> LoadResult:
        """A warm-up, then the measured run of `request` at the configured load."""
        connections = self.options.connections
        if warm_up:
            warmup = self.load(connections, self.options.warmup_seconds, authorization)
            load.measure(self.base_url, request, warmup)
        cpu_before = self.monitor.cpu_seconds()
        connections_before = connections_opened(self.serving.databases.url)
        measured = self.load(connections, self.options.seconds, authorization)
        result = load.measure(self.base_url, request, measured)
        cpu = self.monitor.cpu_seconds() - cpu_before
        opened = connections_opened(self.serving.databases.url) - connections_before
        full = f"{self.name} · {label}"
        # Robust to a busy machine, unlike requests/s: what the changes aimed at.
        cpu_ms_per_request = cpu * 1000 / max(result.requests, 1)
        self.results.add(full, "req/s", result.per_second)
        self.results.add(f"{full} · p50", "ms", result.p50_ms)
        self.results.add(f"{full} · p99", "ms", result.p99_ms)
        if cpu_per_request:
            self.results.add(f"{full} · server CPU per request", "µs", cpu_ms_per_request * 1000)
        self.results.details.append(
            {
                "run": self.run_number,
                "measurement": full,
                "requests_per_second": result.per_second,
                "failed_requests": result.failed,
                "server_cpu_ms_per_request": cpu_ms_per_request,
                # Connections the pool opened during the run: churn when above 0.
                "database_connections_opened": opened,
                "wrk_cpu_share_of_a_core": result.wrk_cpu_share,
                "wrk": result.raw,
            }
        )
        self.wrk_peak = max(self.wrk_peak, result.wrk_cpu_share)
        self.count_failures(full, result)
        return result

    def count_failures(self, label: str, result: LoadResult) -> None:
        """Failed requests are counted and reported, not fatal: an overloaded machine
        makes the ready check time out (503) and the pool turn requests away (503)."""
        if result.failed:
            self.failed += result.failed
            print(
                f"bench: {label}: {result.failed} of {result.requests} requests failed "
                f"(wrk: {result.raw['errors']}; non-2xx under 'status')",
                file=sys.stderr,
            )

    def scenario(self, scenario: Scenario, authorization: str) -> None:
        self.measure(
            scenario.label, scenario.request, authorization if scenario.authenticated else ""
        )

    def login_alone(self) -> None:
        """Logins at full load: bound by Argon2 on purpose, so reported on their own.

        No warm-up: the server is warm by now, and the logins a warm-up leaves
        queued (the server hashes them although wrk has hung up) would delay the
        measured ones by seconds.
        """
        label = "POST /api/auth/login (Argon2)"
        self.measure(label, self.serving.login, "", warm_up=False)

    def users_me_during_logins(self, authorization: str) -> None:
        """GET /api/users/me while logins hash in threads: the event loop must keep serving."""
        # The logins run through the warm-up and the whole measured run.
        seconds = self.options.seconds + 2 * self.options.warmup_seconds
        logins = load.Wrk(
            self.base_url, self.serving.login, self.load(self.options.login_connections, seconds)
        )
        try:
            label = f"GET /api/users/me during logins ({self.options.login_connections} at a time)"
            # The server's CPU time includes the logins' Argon2: no per-request figure.
            self.measure(label, self.serving.users_me, authorization, cpu_per_request=False)
            login_result = logins.result()
        finally:
            logins.stop()
        self.wrk_peak = max(self.wrk_peak, login_result.wrk_cpu_share)
        self.count_failures(f"{self.name} · logins beside it", login_result)
        self.results.add(f"{self.name} · … logins beside it", "req/s", login_result.per_second)
