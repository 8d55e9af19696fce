"""The Kubernetes manifests of `deploy=kubernetes`: valid, safe, and true to the image and the app.

Offline: `kubernetes-validate` checks every manifest against the schemas of the
newest Kubernetes it ships, strictly (no unknown field); Checkov, run apart with
`uvx` (it pins its own old dependencies), may fail only the checks that the
rendered README explains, and the README explains only checks that fail. That
the service runs on a read-only root file system as uid 10001 is proven by
tests/serving/test_image.py, which runs the image that way.
"""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.support.dockerfile import parse
from tests.support.matrix import COMBINATIONS
from tests.support.project import Project, Renders

KUBERNETES = [name for name, answers in COMBINATIONS.items() if answers["deploy"] == "kubernetes"]
MANIFESTS = Path("deploy/kubernetes")
# Checkov moves fast and adds checks: a new release is taken on purpose, README and all.
CHECKOV = "checkov==3.3.30"
GRACE_PERIOD_SECONDS = 30  # Kubernetes' default; the app documents no other
CHECK_ID = re.compile(r"\bCKV2?_K8S_\d+\b")


@pytest.fixture(params=KUBERNETES)
def project(request: pytest.FixtureRequest, rendered: Renders) -> Project:
    return rendered[request.param]


def manifests(project: Project) -> dict[str, dict[str, Any]]:
    """Every resource but the kustomization, by kind."""
    resources = [
        yaml.safe_load(path.read_text())
        for path in sorted((project.path / MANIFESTS).glob("*.yaml"))
        if path.name != "kustomization.yaml"
    ]
    by_kind = {resource["kind"]: resource for resource in resources}
    assert len(by_kind) == len(resources), "one resource of each kind"
    return by_kind


def kubernetes_section(project: Project) -> str:
    readme = (project.path / "README.md").read_text()
    return readme[readme.index("\n## Kubernetes\n") :].split("\n## ", 2)[1]


def test_the_option_is_in_the_matrix() -> None:
    assert KUBERNETES


def test_every_manifest_is_valid_for_the_newest_kubernetes(project: Project) -> None:
    version = latest_version()
    files = sorted(
        str(path)
        for path in (project.path / MANIFESTS).glob("*.yaml")
        if path.name != "kustomization.yaml"
    )

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
    assert result.stdout.count("passed for resource") == len(files), result.stdout
    assert "WARN" not in result.stdout + result.stderr


def test_the_kustomization_applies_every_manifest_with_one_image(project: Project) -> None:
    folder = project.path / MANIFESTS
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    resources = manifests(project)

    assert sorted(kustomization["resources"]) == sorted(
        path.name for path in folder.glob("*.yaml") if path.name != "kustomization.yaml"
    )
    (image,) = kustomization["images"]
    containers = [
        *resources["Deployment"]["spec"]["template"]["spec"]["containers"],
        *resources["Job"]["spec"]["template"]["spec"]["containers"],
    ]
    assert {container["image"].rsplit(":", 1)[0] for container in containers} == {image["name"]}


def pod_specs(project: Project) -> list[dict[str, Any]]:
    resources = manifests(project)
    return [resources[kind]["spec"]["template"]["spec"] for kind in ("Deployment", "Job")]


def test_pods_run_as_the_image_user_unprivileged_on_a_read_only_root(project: Project) -> None:
    image = parse((project.path / "Dockerfile").read_text())

    for pod in pod_specs(project):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == image.uid
        assert pod["securityContext"]["runAsGroup"] == image.gid
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "privileged": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            }
            assert set(container["resources"]) == {"requests", "limits"}
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_the_deployment_serves_the_image_port_and_probes_the_app_health_routes(
    project: Project,
) -> None:
    image = parse((project.path / "Dockerfile").read_text())
    deployment = manifests(project)["Deployment"]
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
    assert pod["terminationGracePeriodSeconds"] == GRACE_PERIOD_SECONDS
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] < GRACE_PERIOD_SECONDS
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert "replicas" not in deployment["spec"]  # the autoscaler's


def test_the_job_migrates_and_the_service_autoscaler_and_budget_target_the_api(
    project: Project,
) -> None:
    resources = manifests(project)
    deployment = resources["Deployment"]
    api = deployment["spec"]["selector"]["matchLabels"]
    (migrate,) = resources["Job"]["spec"]["template"]["spec"]["containers"]

    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert resources["Job"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert resources["Service"]["spec"]["selector"] == api
    assert resources["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert resources["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert resources["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == api
    assert deployment["spec"]["template"]["metadata"]["labels"] == api


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
    # uvicorn's own: workers and the proxies trusted with forwarded headers.
    uvicorn = {"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"}
    secret_settings = settings(project, "SecretStr") | {"DATABASE_URL"}

    assert "Secret" not in resources
    assert set(config_map["data"]) <= settings(project) | uvicorn
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
