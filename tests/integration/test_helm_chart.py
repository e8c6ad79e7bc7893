"""The Helm chart (deploy/helm/authnode), checked offline: ``helm lint --strict``,
``helm template`` for the default values and each preset, ``kubernetes-validate --strict``
against the oldest and newest Kubernetes we support, and what matters in the output:
probes, the drain arithmetic of the grace period, rolling updates, PDBs, the HPA target,
the security context, resources, metrics, the Secret, and the presets' pool sizes and
concurrency against config/*.env. The plain manifests in deploy/kubernetes/ must equal a
fresh render.

helm is built by scripts/bootstrap.sh (``go install``, like FerretDB).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from authnode.settings import parse_env_file

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "authnode"
PRESETS = ("starter", "growth", "high-scale")
VALUES_FILES = {"default": None} | {p: CHART / f"values-{p}.yaml" for p in PRESETS}
# kubernetes-validate 1.37 ships schemas for 1.25 to 1.37; the chart needs policy/v1 PDBs
# and autoscaling/v2 HPAs (1.23+), and says kubeVersion >=1.25.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
APP_SHUTDOWN_TIMEOUT_MS = 10000  # the application's default SHUTDOWN_TIMEOUT_MS


def _helm() -> str:
    found = shutil.which("helm") or str(Path.home() / "go" / "bin" / "helm")
    if not os.access(found, os.X_OK):
        pytest.fail("helm not found: run scripts/bootstrap.sh (it builds helm v3.22.0)")
    return found


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def _values_args(preset: str) -> list[str]:
    values_file = VALUES_FILES[preset]
    return [] if values_file is None else ["-f", str(values_file)]


@cache
def _render_text(preset: str, *sets: str) -> str:
    args = [_helm(), "template", "auth", str(CHART), "--kube-version", KUBERNETES_VERSIONS[-1],
            *_values_args(preset)]
    for item in sets:
        args += ["--set", item]
    return _run(*args).stdout


def _render(preset: str = "default", *sets: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(_render_text(preset, *sets)) if doc]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return found[0]


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    containers = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "Job")]


# --------------------------------------------------------------------------- helm itself


@pytest.mark.parametrize("preset", list(VALUES_FILES))
def test_chart_lints_strictly(preset: str) -> None:
    result = _run(_helm(), "lint", "--strict", str(CHART), *_values_args(preset))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("preset", list(VALUES_FILES))
def test_every_preset_renders_and_validates_against_oldest_and_newest_kubernetes(
        preset: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{preset}.yaml"
    manifest.write_text(_render_text(preset))
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in _render(preset))
    assert {"Deployment/auth-authnode-api", "Deployment/auth-authnode-worker",
            "Service/auth-authnode-api", "HorizontalPodAutoscaler/auth-authnode-api",
            "PodDisruptionBudget/auth-authnode-api", "PodDisruptionBudget/auth-authnode-worker",
            "Job/auth-authnode-migrate"} <= set(kinds), kinds
    validate = str(Path(sys.executable).parent / "kubernetes-validate")
    for version in KUBERNETES_VERSIONS:
        result = _run(validate, "--strict", "-k", version, str(manifest), check=False)
        assert result.returncode == 0, f"{version}:\n{result.stdout}\n{result.stderr}"
        assert result.stdout.count("passed for resource") == len(kinds), result.stdout


def test_strict_validation_rejects_a_misspelt_field(tmp_path: Path) -> None:
    """The validation above can fail: a field Kubernetes does not know is an error."""
    docs = _render()
    api = _one(docs, "Deployment", "auth-authnode-api")
    api["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump(api))
    validate = str(Path(sys.executable).parent / "kubernetes-validate")
    result = _run(validate, "--strict", "-k", KUBERNETES_VERSIONS[0], str(manifest),
                  check=False)
    assert result.returncode != 0 and "terminationGracePeriod" in result.stdout + result.stderr


def test_plain_manifests_equal_a_fresh_render(tmp_path: Path) -> None:
    fresh = tmp_path / "authnode.yaml"
    _run("bash", str(ROOT / "scripts" / "render_kubernetes.sh"), str(fresh))
    committed = ROOT / "deploy" / "kubernetes" / "authnode.yaml"
    assert committed.read_text() == fresh.read_text(), \
        "deploy/kubernetes/authnode.yaml is out of date: run scripts/render_kubernetes.sh"


# --------------------------------------------------------------------------- what matters


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_carry_the_pool_sizes_and_concurrency_of_config_env(preset: str) -> None:
    expected = parse_env_file(ROOT / "config" / f"{preset}.env")
    assert {"DB_POOL_SIZE", "DB_MIN_POOL_SIZE", "WORKER_CONCURRENCY"} <= set(expected)
    for doc in _workloads(_render(preset)):
        env = _env(_container(doc))
        assert {name: env.get(name) for name in expected} == expected, doc["metadata"]["name"]


def test_probes() -> None:
    docs = _render()
    api = _container(_one(docs, "Deployment", "auth-authnode-api"))
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = api["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    # Out of the endpoints well before the drain ends (DRAIN_DELAY_S=5).
    readiness = api["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] < 5
    worker = _container(_one(docs, "Deployment", "auth-authnode-worker"))
    assert worker["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert worker["startupProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


@pytest.mark.parametrize(("preset", "sets"), [
    ("default", ()), ("starter", ()), ("growth", ()), ("high-scale", ()),
    ("default", ("api.drainDelaySeconds=12", "config.SHUTDOWN_TIMEOUT_MS=45500")),
])
def test_grace_period_outlasts_drain_plus_shutdown(preset: str, sets: tuple[str, ...]) -> None:
    docs = _render(preset, *sets)
    for name, role in (("auth-authnode-api", "api"), ("auth-authnode-worker", "worker")):
        deployment = _one(docs, "Deployment", name)
        env = _env(_container(deployment))
        drain_s = float(env["DRAIN_DELAY_S"]) if role == "api" else 0.0
        shutdown_ms = int(env.get("SHUTDOWN_TIMEOUT_MS", APP_SHUTDOWN_TIMEOUT_MS))
        grace_s = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace_s > drain_s + shutdown_ms / 1000, (name, grace_s, drain_s, shutdown_ms)
        assert grace_s == drain_s + math.ceil(shutdown_ms / 1000) + 5
    if sets:
        api = _one(docs, "Deployment", "auth-authnode-api")
        assert _env(_container(api))["DRAIN_DELAY_S"] == "12"
        assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 12 + 46 + 5


def test_rolling_updates_never_lower_capacity_and_pods_spread() -> None:
    for name in ("auth-authnode-api", "auth-authnode-worker"):
        deployment = _one(_render(), "Deployment", name)
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname",
                                                      "topology.kubernetes.io/zone"}
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for constraint in spread:
            selector = constraint["labelSelector"]["matchLabels"]
            assert selector.items() <= labels.items()


def test_disruption_budgets_select_each_role() -> None:
    docs = _render()
    for role in ("api", "worker"):
        pdb = _one(docs, "PodDisruptionBudget", f"auth-authnode-{role}")
        deployment = _one(docs, "Deployment", f"auth-authnode-{role}")
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.mark.parametrize("preset", list(VALUES_FILES))
def test_api_autoscales_at_half_a_core_and_the_worker_when_asked(preset: str) -> None:
    docs = _render(preset)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    overrides = yaml.safe_load(VALUES_FILES[preset].read_text()) if VALUES_FILES[preset] else {}
    hpa = _one(docs, "HorizontalPodAutoscaler", "auth-authnode-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "auth-authnode-api"
    target = hpa["spec"]["metrics"][0]["resource"]
    assert target["name"] == "cpu" and target["target"] == {"type": "Utilization",
                                                            "averageUtilization": 50}
    scaling = values["api"]["autoscaling"] | overrides.get("api", {}).get("autoscaling", {})
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == \
        (scaling["minReplicas"], scaling["maxReplicas"])
    assert "replicas" not in _one(docs, "Deployment", "auth-authnode-api")["spec"]
    worker_scales = overrides.get("worker", {}).get("autoscaling", {}).get("enabled", False)
    workers = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"
               and d["metadata"]["name"] == "auth-authnode-worker"]
    assert len(workers) == (1 if worker_scales else 0)
    without = _render(preset, "api.autoscaling.enabled=false", "api.replicas=3")
    assert not [d for d in without if d["kind"] == "HorizontalPodAutoscaler"
                and d["metadata"]["name"] == "auth-authnode-api"]
    assert _one(without, "Deployment", "auth-authnode-api")["spec"]["replicas"] == 3


@pytest.mark.parametrize("preset", list(VALUES_FILES))
def test_every_container_is_locked_down_and_has_resources(preset: str) -> None:
    workloads = _workloads(_render(preset))
    assert len(workloads) == 3
    for doc in workloads:
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        container = _container(doc)
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["privileged"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), (doc["metadata"]["name"], kind)


def test_metrics_port_annotations_and_optional_service_monitor() -> None:
    docs = _render()
    api = _one(docs, "Deployment", "auth-authnode-api")
    worker = _one(docs, "Deployment", "auth-authnode-worker")
    assert _env(_container(api))["METRICS_BIND"] == "0.0.0.0:9100"
    assert _container(worker)["args"] == ["serve", "--role", "worker",
                                          "--metrics-bind", "0.0.0.0:9100"]
    for deployment in (api, worker):
        ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
        assert ports["metrics"] == 9100
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "9100"
        assert annotations["prometheus.io/path"] == "/metrics"
    service = _one(docs, "Service", "auth-authnode-api")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == \
        {"http": "http", "metrics": "metrics"}
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    monitor = _one(_render("default", "metrics.serviceMonitor.enabled=true"),
                   "ServiceMonitor", "auth-authnode")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_secret_is_an_existing_one_or_created_before_the_migrate_hook() -> None:
    docs = _render()
    assert not [d for d in docs if d["kind"] == "Secret"]
    for doc in _workloads(docs):
        assert _container(doc)["envFrom"] == [{"secretRef": {"name": "authnode"}}]
    migrate = _one(docs, "Job", "auth-authnode-migrate")
    assert _container(migrate)["args"] == ["migrate"]
    assert migrate["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"

    key = "k" * 40
    created = _render("default", "secret.values.SECRET_KEY=" + key,
                      "secret.values.REDIS_URL=redis://redis:6379/0")
    secret = _one(created, "Secret", "auth-authnode")
    assert secret["stringData"] == {"SECRET_KEY": key, "REDIS_URL": "redis://redis:6379/0"}
    # Before the hook Job that reads it (hooks run by ascending weight).
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        migrate["metadata"]["annotations"]["helm.sh/hook-weight"])
    for doc in _workloads(created):
        assert _container(doc)["envFrom"] == [{"secretRef": {"name": "auth-authnode"}}]
    short = _run(_helm(), "template", "auth", str(CHART), "--kube-version", "1.37.0",
                 "--set", "secret.values.SECRET_KEY=short", check=False)
    assert short.returncode != 0 and "at least 32 characters" in short.stderr
