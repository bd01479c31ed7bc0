"""The Kubernetes manifests (deploy/kubernetes/): valid against the API's schemas, offline (kubernetes-validate
ships them), and holding to what docs/kubernetes.md promises: non-root, read-only root filesystem, resources,
probes, secrets from Secrets and never in the arguments. `make lint` runs the same validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return document


def manifests() -> list[str]:
    return sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = manifest["spec"]["template"]["spec"]["containers"]
    return found


@pytest.mark.parametrize("name", manifests())
def test_each_manifest_is_valid_for_the_kubernetes_api(name: str) -> None:
    kubernetes_validate.validate(load(name), KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_the_service_and_not_the_one_off_check() -> None:
    resources = load("kustomization.yaml")["resources"]
    assert sorted(resources) == ["deployment.yaml", "networkpolicy.yaml", "service.yaml"]
    assert all((DEPLOY / name).is_file() for name in resources)


@pytest.mark.parametrize("name", ["deployment.yaml", "check-job.yaml"])
def test_the_pods_run_unprivileged_on_a_read_only_root(name: str) -> None:
    manifest = load(name)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    for container in containers(manifest):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= container["resources"].keys()
        env = {item["name"]: item for item in container["env"]}
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_the_service_probes_health_and_takes_its_token_from_a_secret() -> None:
    [container] = containers(load("deployment.yaml"))
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {item["name"]: item for item in container["env"]}
    assert env["DIAG_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "smtp-diag", "key": "api-token"}
    assert env["DIAG_DB_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert str(Path(env["DIAG_DB_PATH"]["value"]).parent) in mounts  # SQLite writes to a volume, not the root


def test_the_check_job_takes_the_password_from_a_secret_never_from_its_arguments() -> None:
    [container] = containers(load("check-job.yaml"))
    assert "--password-env=SMTP_PASSWORD" in container["args"]
    assert not any(arg.startswith(("--password=", "--password ")) for arg in container["args"])
    env = {item["name"]: item for item in container["env"]}
    assert env["SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "smtp-diag-check", "key": "password"}


def test_the_network_policy_allows_dns_and_the_smtp_ports_only() -> None:
    policy = load("networkpolicy.yaml")
    assert policy["spec"]["policyTypes"] == ["Egress"]
    ports = {(port["protocol"], port["port"]) for rule in policy["spec"]["egress"] for port in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 25), ("TCP", 465), ("TCP", 587), ("TCP", 2525),
                     ("TCP", 5432)}
