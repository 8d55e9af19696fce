"""The Kubernetes manifests of `deploy=kubernetes`: valid, safe, and true to the image and the app.

Offline: `kubernetes-validate` checks every manifest that the kustomization
applies against the schemas of the newest Kubernetes it ships, strictly (no
unknown field); Checkov, run apart with `uvx` (it pins its own old
dependencies), may fail only the checks that the rendered README explains, and
the README explains only checks that fail. That the service runs on a read-only
root file system as uid 10001 is proven by tests/serving/test_image.py, which runs the
image that way.

`podmonitor.yaml`, a custom resource of the Prometheus Operator, is the
exception: kubernetes-validate has no schema for it, and no cluster is at hand
to ask for its CustomResourceDefinition. Its test checks instead, field by
field, what the Operator reads from it (apiVersion and kind, the pod selector,
the port by name, the path, the bearer token's Secret and key) against the
Deployment it must find and the Secret the README creates; and that it holds no
other field, so that a misspelt one cannot pass unnoticed.
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.support.dockerfile import parse
from tests.support.matrix import COMBINATIONS
from tests.support.project import Project, Renders

KUBERNETES = [name for name, answers in COMBINATIONS.items() if answers["deploy"] == "kubernetes"]
MANIFESTS = Path("deploy/kubernetes")
# Applied apart, when the Prometheus Operator is installed: not in the kustomization.
POD_MONITOR = "podmonitor.yaml"
# Checkov moves fast and adds checks: a new release is taken on purpose, README and all.
CHECKOV = "checkov==3.3.30"
CHECK_ID = re.compile(r"\bCKV2?_K8S_\d+\b")
# Kubernetes quantities, binary and decimal suffixes: enough for these manifests.
QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|k|M|G)?$")
UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
# Where the ingress controller and Prometheus run: placeholders the README names.
INGRESS_NAMESPACES = ["ingress-nginx", "monitoring"]
DNS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
OTLP_HTTP_PORT = 4318  # the OTLP/HTTP port ("Operating it": a gRPC port will not do)
HTTPS_PORT = 443  # Sentry, and the OAuth providers when there are some


@pytest.fixture(params=KUBERNETES)
def project(request: pytest.FixtureRequest, rendered: Renders) -> Project:
    return rendered[request.param]


def applied_files(project: Project) -> list[Path]:
    """The manifests that `kubectl apply -k` applies: all but the kustomization and the monitor."""
    return sorted(
        path
        for path in (project.path / MANIFESTS).glob("*.yaml")
        if path.name not in {"kustomization.yaml", POD_MONITOR}
    )


def manifests(project: Project) -> dict[str, dict[str, Any]]:
    """Every applied resource, by kind; Deployments and NetworkPolicies, one per component,
    by `kind/component`.
    """
    resources = [
        document
        for path in applied_files(project)
        for document in yaml.safe_load_all(path.read_text())
    ]
    by_kind = {
        (
            f"{resource['kind']}/{resource['metadata']['labels']['app.kubernetes.io/component']}"
            if resource["kind"] in {"Deployment", "NetworkPolicy"}
            else resource["kind"]
        ): resource
        for resource in resources
    }
    assert len(by_kind) == len(resources), "one resource of each kind"
    return by_kind


def kubernetes_section(project: Project) -> str:
    readme = (project.path / "README.md").read_text()
    return readme[readme.index("\n## Kubernetes\n") :].split("\n## ", 2)[1]


def quantity(value: str) -> int:
    match = QUANTITY.match(value)
    assert match, f"{value!r}: a quantity this test does not read"
    return int(match[1]) * UNITS[match[2]]


def test_the_option_is_in_the_matrix() -> None:
    assert KUBERNETES


def test_every_manifest_is_valid_for_the_newest_kubernetes(project: Project) -> None:
    version = latest_version()
    files = [str(path) for path in applied_files(project)]

    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "kubernetes-validate"),
            *("--strict", "--kubernetes-version", version),
            *files,
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(manifests(project)), result.stdout
    assert "WARN" not in result.stdout + result.stderr


def test_the_kustomization_applies_every_manifest_with_one_image(project: Project) -> None:
    folder = project.path / MANIFESTS
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    resources = manifests(project)

    assert sorted(kustomization["resources"]) == [path.name for path in applied_files(project)]
    assert POD_MONITOR not in kustomization["resources"]  # its CRD may be absent
    assert (folder / POD_MONITOR).is_file()
    (image,) = kustomization["images"]
    containers = [
        *resources["Deployment/api"]["spec"]["template"]["spec"]["containers"],
        *resources["Deployment/worker"]["spec"]["template"]["spec"]["containers"],
        *resources["Job"]["spec"]["template"]["spec"]["containers"],
    ]
    assert {container["image"].rsplit(":", 1)[0] for container in containers} == {image["name"]}


def pod_specs(project: Project) -> list[dict[str, Any]]:
    resources = manifests(project)
    kinds = ("Deployment/api", "Deployment/worker", "Job")
    return [resources[kind]["spec"]["template"]["spec"] for kind in kinds]


def test_pods_run_as_the_image_user_unprivileged_on_a_read_only_root(project: Project) -> None:
    image = parse((project.path / "Dockerfile").read_text())

    for pod in pod_specs(project):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == image.uid
        assert pod["securityContext"]["runAsGroup"] == image.gid
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "privileged": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory", "ephemeral-storage"}


def test_pods_use_their_own_service_account_without_its_token(project: Project) -> None:
    account = manifests(project)["ServiceAccount"]

    assert account["metadata"]["name"] != "default"
    assert account["automountServiceAccountToken"] is False
    for pod in pod_specs(project):
        assert pod["serviceAccountName"] == account["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False


def test_the_api_writes_only_to_a_bounded_tmp_within_its_disk_limit(project: Project) -> None:
    pod = manifests(project)["Deployment/api"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (volume,) = pod["volumes"]

    assert container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/tmp"}]  # noqa: S108
    assert set(volume) == {"name", "emptyDir"}
    assert "medium" not in volume["emptyDir"]  # on disk: in memory it would count as memory
    # The pod's disk limit is its containers' sum, and covers /tmp too: room for the logs.
    limit = quantity(container["resources"]["limits"]["ephemeral-storage"])
    assert quantity(volume["emptyDir"]["sizeLimit"]) < limit
    for each in pod_specs(project):
        for bounds in (container["resources"] for container in each["containers"]):
            disk = {bound: quantity(bounds[bound]["ephemeral-storage"]) for bound in bounds}
            assert disk["requests"] <= disk["limits"]


def test_the_deployment_serves_the_image_port_and_probes_the_app_health_routes(
    project: Project,
) -> None:
    image = parse((project.path / "Dockerfile").read_text())
    deployment = manifests(project)["Deployment/api"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    served = set(json.loads((project.path / "openapi.json").read_text())["paths"])

    assert "command" not in container  # the image's CMD
    assert container["ports"] == [{"name": "http", "containerPort": image.port}]
    probes = {name: container[name]["httpGet"] for name in container if name.endswith("Probe")}
    assert probes == {
        "startupProbe": {"path": "/api/health/live", "port": "http"},
        "livenessProbe": {"path": "/api/health/live", "port": "http"},
        "readinessProbe": {"path": "/api/health/ready", "port": "http"},
    }
    assert {probe["path"] for probe in probes.values()} <= served
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert "replicas" not in deployment["spec"]  # the autoscaler's


def test_the_worker_runs_the_image_with_its_command_probed_by_its_liveness_file(
    project: Project,
) -> None:
    resources = manifests(project)
    worker = resources["Deployment/worker"]
    pod = worker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (api,) = resources["Deployment/api"]["spec"]["template"]["spec"]["containers"]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    probe = " ".join(container["livenessProbe"]["exec"]["command"])

    assert container["image"] == api["image"]
    assert container["command"] == ["python", "-m", "commands.worker"]
    assert container["envFrom"] == api["envFrom"]  # the same settings as the API
    assert "ports" not in container
    # The probe reads the file the worker touches, on the pod's writable /tmp.
    assert env["JOBS_LIVENESS_FILE"] in probe
    assert env["JOBS_LIVENESS_FILE"].startswith(container["volumeMounts"][0]["mountPath"])
    assert worker["spec"]["replicas"] >= 2
    # Time for running jobs to finish after SIGTERM.
    assert pod["terminationGracePeriodSeconds"] >= 30
    # prune_logins runs in the worker: no CronJob.
    assert "CronJob" not in resources


def test_the_shutdown_delay_happens_once_and_the_drain_fits_the_grace_period(
    project: Project,
) -> None:
    """Kubernetes counts preStop inside the grace period; the app's delay would come after it."""
    resources = manifests(project)
    config = resources["ConfigMap"]["data"]
    pod = resources["Deployment/api"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    app_grace = float(config["SHUTDOWN_GRACE_SECONDS"])

    assert float(config["SHUTDOWN_DELAY_SECONDS"]) == 0
    assert pod["terminationGracePeriodSeconds"] == pre_stop + app_grace
    assert pre_stop > 0


def test_the_job_migrates_and_the_service_autoscaler_and_budget_target_the_api(
    project: Project,
) -> None:
    resources = manifests(project)
    deployment = resources["Deployment/api"]
    api = deployment["spec"]["selector"]["matchLabels"]
    job = resources["Job"]["spec"]
    (migrate,) = job["template"]["spec"]["containers"]

    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    # Deleted by the cluster, but not before it could have run to its deadline and been read.
    assert job["ttlSecondsAfterFinished"] > job["activeDeadlineSeconds"]
    assert resources["Service"]["spec"]["selector"] == api
    assert resources["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert resources["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert "metrics-server" in kubernetes_section(project)  # the autoscaler's CPU figures
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == api
    assert deployment["spec"]["template"]["metadata"]["labels"] == api


def test_the_ingress_serves_the_service_over_tls_with_the_placeholders_the_readme_names(
    project: Project,
) -> None:
    resources = manifests(project)
    ingress = resources["Ingress"]["spec"]
    service = resources["Service"]
    readme = kubernetes_section(project)
    (rule,) = ingress["rules"]
    (tls,) = ingress["tls"]
    (path,) = rule["http"]["paths"]

    assert path["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"name": service["spec"]["ports"][0]["name"]},
    }
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert tls["hosts"] == [rule["host"]]
    assert rule["host"] in readme
    assert tls["secretName"] in readme
    assert f"ingressClassName: {ingress['ingressClassName']}" in readme  # and how to change it


def namespace(name: str) -> dict[str, Any]:
    """A NetworkPolicy peer: every pod of the namespace `name`."""
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port, f"{url}: no port"
    return port


def test_network_policies_let_in_the_ingress_and_prometheus_and_out_what_the_settings_name(
    project: Project,
) -> None:
    resources = manifests(project)
    config = resources["ConfigMap"]["data"]
    readme = kubernetes_section(project)
    (database_url,) = re.findall(r"--from-literal=DATABASE_URL='([^']+)'", readme)
    database = {"protocol": "TCP", "port": port_of(database_url)}
    deployment = resources["Deployment/api"]["metadata"]["name"]
    kinds = ("Deployment/api", "Deployment/worker", "Job")
    pods = {kind: resources[kind]["spec"]["template"] for kind in kinds}
    (container,) = pods["Deployment/api"]["spec"]["containers"]
    (http,) = container["ports"]
    api = resources["NetworkPolicy/api"]["spec"]
    migrate = resources["NetworkPolicy/migrate"]["spec"]
    worker = resources["NetworkPolicy/worker"]["spec"]

    # The API's keeps the name of the single policy of earlier releases, which let anyone
    # in: applying a new release must replace that one, not add to it.
    assert resources["NetworkPolicy/api"]["metadata"]["name"] == deployment
    # Each selects its pods, and stops all traffic it does not allow, both ways.
    assert api["podSelector"]["matchLabels"] == pods["Deployment/api"]["metadata"]["labels"]
    assert migrate["podSelector"]["matchLabels"] == pods["Job"]["metadata"]["labels"]
    assert worker["podSelector"]["matchLabels"] == pods["Deployment/worker"]["metadata"]["labels"]
    for policy in (api, migrate, worker):
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        dns, *others = policy["egress"]
        assert dns == {"to": [namespace("kube-system")], "ports": DNS}
        assert all(set(rule) == {"ports"} for rule in others)  # by port: anywhere it runs

    # In: the ingress controller and Prometheus, to the API's port only; nothing to the Job.
    (incoming,) = api["ingress"]
    assert incoming == {
        "from": [namespace(name) for name in INGRESS_NAMESPACES],
        "ports": [{"protocol": "TCP", "port": http["name"]}],
    }
    assert all(f"`{name}`" in readme for name in INGRESS_NAMESPACES)
    assert "ingress" not in migrate
    assert "ingress" not in worker

    # Out: the API to PostgreSQL, Redis and the exporters; the worker to PostgreSQL, SMTP
    # when it sends mail (the API only enqueues), the exporters; the Job PostgreSQL only.
    exporters = [{"protocol": "TCP", "port": port} for port in (OTLP_HTTP_PORT, HTTPS_PORT)]
    redis = {"protocol": "TCP", "port": port_of(config["LOGIN_LIMIT_STORAGE_URI"])}
    smtp = (
        [{"protocol": "TCP", "port": int(config["MAIL_PORT"])}]
        if project.answers["email_backend"] == "smtp"
        else []
    )
    assert [rule["ports"] for rule in api["egress"][1:]] == [
        [port] for port in [database, redis, *exporters]
    ]
    assert [rule["ports"] for rule in worker["egress"][1:]] == [
        [port] for port in [database, *smtp, *exporters]
    ]
    assert [rule["ports"] for rule in migrate["egress"][1:]] == [[database]]


def test_failed_logins_are_counted_in_the_redis_the_readme_asks_for(project: Project) -> None:
    uri = manifests(project)["ConfigMap"]["data"]["LOGIN_LIMIT_STORAGE_URI"]
    readme = kubernetes_section(project)

    assert uri.startswith("async+redis://")
    assert urlsplit(uri).hostname in readme
    # The client the image must keep: without it the service refuses the setting at start-up.
    assert '"limits[async-redis]"' in readme


def test_prometheus_finds_the_api_pods_by_annotation_or_through_the_pod_monitor(
    project: Project,
) -> None:
    """The monitor field by field, for want of its CRD's schema (see the module's docstring)."""
    deployment = manifests(project)["Deployment/api"]
    template = deployment["spec"]["template"]
    (container,) = template["spec"]["containers"]
    (http,) = container["ports"]
    monitor = yaml.safe_load((project.path / MANIFESTS / POD_MONITOR).read_text())
    readme = kubernetes_section(project)
    secret_names = set(re.findall(r"--from-literal=(\w+)=", readme))

    annotations = template["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(http["containerPort"]),
        "prometheus.io/path": "/metrics",
    }

    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["metadata"]) == {"name", "namespace", "labels"}
    # The Operator looks for the pods, and the Secret, in the monitor's own namespace.
    assert monitor["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    spec = monitor["spec"]
    assert set(spec) == {"selector", "podMetricsEndpoints"}
    assert spec["selector"] == {"matchLabels": template["metadata"]["labels"]}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert set(endpoint) == {"port", "path", "interval", "authorization"}
    assert endpoint["port"] == http["name"]
    assert endpoint["path"] == annotations["prometheus.io/path"]
    assert re.fullmatch(r"[0-9]+[smh]", endpoint["interval"])
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": deployment["metadata"]["name"], "key": "METRICS_TOKEN"},
    }
    assert "METRICS_TOKEN" in secret_names
    assert f"kubectl apply -f deploy/kubernetes/{POD_MONITOR}" in readme


def settings(project: Project, of_type: str = r"[^\n]+") -> set[str]:
    """Names of the settings in app/core/config.py, of a type if given."""
    config = (project.path / "app/core/config.py").read_text()
    return set(re.findall(rf"^    ([A-Z][A-Z0-9_]*): {of_type}", config, re.MULTILINE))


def test_settings_come_from_a_configmap_and_secrets_from_a_secret_never_written_here(
    project: Project,
) -> None:
    resources = manifests(project)
    config_map = resources["ConfigMap"]
    slug = yaml.safe_load((project.path / ".copier-answers.yml").read_text())["project_slug"]
    secret_settings = settings(project, "SecretStr") | {"DATABASE_URL"}

    assert "Secret" not in resources
    # Every one a setting, uvicorn's (WEB_CONCURRENCY, FORWARDED_ALLOW_IPS) and
    # OpenTelemetry's included: app/core/config.py reads them all (commands/serve.py).
    assert set(config_map["data"]) <= settings(project)
    assert not set(config_map["data"]) & secret_settings
    for pod in pod_specs(project):
        for container in pod["containers"]:
            assert container["envFrom"] == [
                {"configMapRef": {"name": config_map["metadata"]["name"]}},
                {"secretRef": {"name": slug}},
            ]
    # The README's command creates the Secret with every secret the service reads.
    readme = kubernetes_section(project)
    assert secret_settings <= set(re.findall(r"--from-literal=(\w+)=", readme))
    rendered = "\n".join(path.read_text() for path in (project.path / MANIFESTS).glob("*.yaml"))
    for line in (project.path / ".env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name in secret_settings and value:
            assert value not in rendered


def test_traces_are_sampled_as_env_example_advises_for_production(project: Project) -> None:
    config = manifests(project)["ConfigMap"]["data"]
    example = (project.path / ".env.example").read_text()
    advised = dict(re.findall(r"^(OTEL_TRACES_SAMPLER\w*)=(\S+)$", example, re.MULTILINE))

    assert config["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert 0 < float(config["OTEL_TRACES_SAMPLER_ARG"]) < 1
    assert advised == {name: config[name] for name in advised}
    assert set(advised) == {"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"}


def test_checkov_fails_only_the_checks_the_readme_explains(
    project: Project, tmp_path: Path
) -> None:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    result = subprocess.run(
        [
            *("uvx", "--python", python, CHECKOV),
            *("--directory", str(project.path / MANIFESTS), "--framework", "kubernetes"),
            *("--skip-download", "--quiet", "--compact", "--output", "json"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    report = json.loads(result.stdout)
    failed = {check["check_id"] for check in report["results"]["failed_checks"]}
    assert report["summary"]["passed"] > 0
    assert report["summary"]["parsing_errors"] == 0
    assert failed == set(CHECK_ID.findall(kubernetes_section(project)))
