"""The Helm chart, helm/retrieval-svc, rendered in both modes from its CI values (ci/*-values.yaml):
`helm lint --strict`, the manifests against Kubernetes' own schemas (kubernetes-validate, strict),
checkov, the rendered settings and keys files through the service's own loaders, the install-time
guards, and the alert rules and dashboard, whose one source is monitoring/.

kubernetes-validate knows only Kubernetes' built-in kinds. The chart's two prometheus-operator
kinds are checked here for what matters instead: the PrometheusRule's rules are the promtool-tested
rules and pass `promtool check rules` (the parse that the operator's admission webhook does), and
the ServiceMonitor selects the chart's Service and names its metrics port.

Tools: helm in .venv/bin (scripts/tools.sh, run by scripts/setup.sh; missing, these tests fail);
checkov in .venv-checkov (same script; missing, only its test skips); promtool from Debian's
prometheus package, as for tests/monitoring.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from retrieval_svc.auth import KeyRing
from retrieval_svc.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "retrieval-svc"
CI_VALUES = {"embedded": CHART / "ci" / "embedded-values.yaml", "scaleOut": CHART / "ci" / "scaleout-values.yaml"}
MODES = list(CI_VALUES)
RULES = ROOT / "monitoring" / "prometheus" / "rules" / "retrieval-slo.rules.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "retrieval-svc-dashboard.json"
CHART_RULES = CHART / "files" / RULES.name
CHART_DASHBOARD = CHART / "files" / DASHBOARD.name
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_CONFIG = CHART / ".checkov.yaml"

# The newest Kubernetes release kubernetes-validate (pinned in the dev extra) has schemas for.
KUBERNETES_VERSION = "1.37.0"
RELEASE, NAMESPACE = "rs", "retrieval"
FULLNAME = f"{RELEASE}-retrieval-svc"
CONFIG_DIR = "/etc/retrieval-svc"
# Custom resources: no schema in kubernetes-validate; checked by the tests named in the docstring.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
WORKLOADS = {"embedded": "StatefulSet", "scaleOut": "Deployment"}
PLACEHOLDER_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


# --- rendering ----------------------------------------------------------------------------------


def helm_binary() -> str:
    path = Path(sys.executable).parent / "helm"
    if path.exists():
        return str(path)
    found = shutil.which("helm")
    if found is None:
        pytest.fail("helm is not in .venv/bin: run `bash scripts/tools.sh` (scripts/setup.sh runs it)")
    return found


def run_helm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *map(str, args)], capture_output=True, text=True, timeout=60)


def template(mode: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_helm("template", RELEASE, CHART, "--namespace", NAMESPACE, "--kube-version", KUBERNETES_VERSION,
                    "-f", CI_VALUES[mode], *extra)


def render(mode: str, *extra: str) -> list[dict[str, Any]]:
    """The manifests `helm template` makes from a mode's CI values and `extra` flags."""
    proc = template(mode, *extra)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    """The manifests of each mode's CI values, as text (rendered once)."""
    out = {}
    for mode in MODES:
        proc = template(mode)
        assert proc.returncode == 0, f"helm template ({mode}) failed:\n{proc.stderr}"
        out[mode] = proc.stdout
    return out


def manifests(rendered: dict[str, str], mode: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered[mode]) if doc]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str = FULLNAME) -> dict[str, Any]:
    found = [doc for doc in kinds(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {[d['metadata']['name'] for d in kinds(docs, kind)]}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod template's spec, by the kind of its owner."""
    specs = {}
    for doc in docs:
        if doc["kind"] in ("StatefulSet", "Deployment"):
            specs[doc["kind"]] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            specs["CronJob"] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def server_container(docs: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    return one(docs, WORKLOADS[mode])["spec"]["template"]["spec"]["containers"][0]


def container_environment(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the process sees it; a Secret's value is a stand-in."""
    return {var["name"]: var["value"] if "value" in var
            else "secret-value-from-" + var["valueFrom"]["secretKeyRef"]["name"]
            for var in container["env"]}


def settings_text(docs: list[dict[str, Any]]) -> str:
    return one(docs, "ConfigMap")["data"]["settings.yaml"]


def validate_kubernetes(docs: list[dict[str, Any]]) -> set[str]:
    """Validate each built-in object against Kubernetes' schema, strict (unknown fields are errors)."""
    for doc in docs:
        if doc["kind"] not in CRD_KINDS:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    return {doc["kind"] for doc in docs}


# --- chart metadata and lint --------------------------------------------------------------------


def test_app_version_is_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


@pytest.mark.parametrize("mode", MODES)
def test_lint_strict(mode):
    proc = run_helm("lint", "--strict", CHART, "--namespace", NAMESPACE, "-f", CI_VALUES[mode])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_values_schema_lists_the_loaders_sections():
    """values.schema.json lets through exactly the settings sections the service knows."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["settings"]["properties"]) == set(Settings.model_fields)


# --- Kubernetes schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_manifests_match_kubernetes_schemas(rendered, mode):
    found = validate_kubernetes(manifests(rendered, mode))
    common = {"ServiceAccount", "ConfigMap", "Service", "PodDisruptionBudget", "NetworkPolicy",
              "ServiceMonitor", "PrometheusRule"}
    by_mode = {"embedded": {"StatefulSet", "Secret"}, "scaleOut": {"Deployment", "HorizontalPodAutoscaler", "CronJob"}}
    assert found == common | by_mode[mode]


def test_validation_is_strict(rendered):
    """A misspelt field fails validation (so the test above can fail)."""
    statefulset = one(manifests(rendered, "embedded"), "StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 50051}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


VARIANTS = {
    "tls-and-client-ca-from-values": ("embedded", [
        "--set", "tls.enabled=true", "--set-string", f"tls.cert={PLACEHOLDER_PEM}",
        "--set-string", "tls.key=placeholder", "--set", "tls.clientAuth.enabled=true",
        "--set-string", f"tls.clientAuth.ca={PLACEHOLDER_PEM}"]),
    "milvus-token-from-values": ("scaleOut", [
        "--set", "milvus.existingSecret=", "--set", "milvus.token=root:Milvus", "--set", "tls.enabled=false",
        "--set", "tls.clientAuth.enabled=false"]),
    "unauthenticated-no-optional-objects": ("embedded", [
        "--set", "auth.keys=null", "--set", "auth.allowUnauthenticated=true",
        "--set", "metrics.serviceMonitor.enabled=false", "--set", "metrics.prometheusRule.enabled=false",
        "--set", "metrics.grafanaDashboard.enabled=false", "--set", "networkPolicy.enabled=false",
        "--set", "podDisruptionBudget.enabled=false", "--set", "serviceAccount.create=false"]),
    "fixed-replicas-no-cronjob": ("scaleOut", [
        "--set", "autoscaling.enabled=false", "--set", "replicas=4", "--set", "evaluationCronJob.enabled=false"]),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_value_variants_match_kubernetes_schemas(variant):
    mode, flags = VARIANTS[variant]
    docs = render(mode, *flags)
    found = validate_kubernetes(docs)
    if variant == "tls-and-client-ca-from-values":
        assert [s["type"] for s in kinds(docs, "Secret")] == ["Opaque", "kubernetes.io/tls", "Opaque"]
    elif variant == "milvus-token-from-values":
        secret = one(docs, "Secret", f"{FULLNAME}-milvus")
        assert "checksum/milvus-secret" in one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        assert secret["data"]["token"] == "cm9vdDpNaWx2dXM="  # base64 of root:Milvus
    elif variant == "unauthenticated-no-optional-objects":
        assert found == {"ConfigMap", "Service", "StatefulSet"}
        sources = one(docs, "StatefulSet")["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
        assert [list(source) for source in sources] == [["configMap"]]
    else:
        assert "CronJob" not in found and "HorizontalPodAutoscaler" not in found
        assert one(docs, "Deployment")["spec"]["replicas"] == 4


# --- the modes ------------------------------------------------------------------------------------


def test_embedded_is_one_replica_with_its_store_on_a_volume(rendered):
    docs = manifests(rendered, "embedded")
    statefulset = one(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 1
    assert statefulset["spec"]["serviceName"] == one(docs, "Service", f"{FULLNAME}-headless")["metadata"]["name"]
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert mounts["/data"] == claim["metadata"]["name"]
    assert not kinds(docs, "Deployment") and not kinds(docs, "HorizontalPodAutoscaler") and not kinds(docs, "CronJob")


def test_scale_out_keeps_no_local_state(rendered):
    docs = manifests(rendered, "scaleOut")
    deployment = one(docs, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    for owner, spec in pod_specs(docs).items():
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        assert set(volumes) == {"config", "tmp"}, owner
        assert "emptyDir" in volumes["tmp"] and "projected" in volumes["config"], owner
    assert not kinds(docs, "StatefulSet") and not kinds(docs, "PersistentVolumeClaim")


def test_scheduled_evaluation_runs_once_in_scale_out(rendered):
    docs = manifests(rendered, "scaleOut")
    cronjob = one(docs, "CronJob", f"{FULLNAME}-evaluation")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job_pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    assert job_pod["spec"]["containers"][0]["args"] == ["evaluate-scheduled", "--config", f"{CONFIG_DIR}/settings.yaml"]
    # The replicas schedule none, and nothing that selects the servers selects the job's pods.
    environment = container_environment(server_container(docs, "scaleOut"))
    assert environment["RETRIEVAL_SVC_EVALUATION__SCHEDULE_SECONDS"] == "0"
    job_labels = job_pod["metadata"]["labels"]
    for selector in (one(docs, "Service")["spec"]["selector"],
                     one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert not selector.items() <= job_labels.items()
    # The network policy covers them.
    assert one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"].items() <= job_labels.items()


# --- settings and keys through the service's own loaders ------------------------------------------


def image_environment() -> dict[str, str]:
    """The RETRIEVAL_SVC_* variables the Dockerfile's ENV sets in the image."""
    instructions = "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines()
                             if not line.lstrip().startswith("#"))
    found = dict(re.findall(r"\b(RETRIEVAL_SVC_[A-Z0-9_]+)=(\S*)", instructions))
    assert found, "the Dockerfile sets no RETRIEVAL_SVC_ variable any more: is this still the way to read them?"
    return found


def loaded_settings(docs: list[dict[str, Any]], mode: str, tmp_path: Path) -> tuple[Settings, Settings]:
    """The settings the server loads (the file, then the image's environment as the container
    overrides it), and the file's alone."""
    path = tmp_path / "settings.yaml"
    path.write_text(settings_text(docs))
    environment = image_environment() | container_environment(server_container(docs, mode))
    return load_settings(path, environ=environment), load_settings(path, environ={})


@pytest.mark.parametrize("mode", MODES)
def test_settings_load_through_the_service_loader(rendered, mode, tmp_path):
    docs = manifests(rendered, mode)
    settings, file_only = loaded_settings(docs, mode, tmp_path)
    container = server_container(docs, mode)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert (settings.server.host, settings.server.metrics_host) == ("0.0.0.0", "0.0.0.0")
    assert (settings.server.port, settings.server.metrics_port) == (ports["grpc"], ports["metrics"])
    assert container["args"] == ["serve", "--config", f"{CONFIG_DIR}/settings.yaml"]
    # The image's own RETRIEVAL_SVC_* variables are set to what the file says, so neither hides the
    # other; the environment adds only the Milvus token and, in scaleOut, the evaluation schedule.
    for section in ("server", "auth", "store", "tls", "milvus"):
        assert (getattr(settings, section).model_dump(exclude={"token"})
                == getattr(file_only, section).model_dump(exclude={"token"})), section
    if mode == "embedded":
        assert settings.store.backend == "embedded" and settings.store.path == "/data/store"
        assert settings.search.fusion == "rrf"  # from the values' settings
        assert settings.evaluation.schedule_seconds == 1800
        assert settings.tls.cert_file == ""
    else:
        assert settings.store.backend == "milvus"
        assert (settings.milvus.uri, settings.milvus.database) == ("http://milvus.milvus.svc:19530", "retrieval")
        assert settings.milvus.token == "secret-value-from-retrieval-svc-milvus"
        assert "token" not in yaml.safe_load(settings_text(docs))["milvus"]  # never in the ConfigMap
        assert settings.evaluation.schedule_seconds == 0
        assert settings.tls.require_client_auth
    assert settings.auth.keys_file == f"{CONFIG_DIR}/keys.yaml"


def test_image_environment_does_not_override_the_chart(tmp_path):
    """The image sets the ports and a keys file in its environment, which wins over the file:
    the container sets them to what the chart wrote, here other ports and no keys."""
    docs = render("embedded", "--set", "ports.grpc=6000", "--set", "ports.metrics=9000",
                  "--set", "auth.keys=null", "--set", "auth.allowUnauthenticated=true")
    settings, file_only = loaded_settings(docs, "embedded", tmp_path)
    assert (settings.server.port, settings.server.metrics_port) == (6000, 9000)
    assert settings.auth.keys_file == "" and settings.auth.allow_unauthenticated
    assert settings == file_only
    assert one(docs, "Service")["spec"]["ports"][0]["port"] == 6000


@pytest.mark.parametrize("mode", MODES)
def test_files_named_in_the_settings_are_mounted(rendered, mode, tmp_path):
    docs = manifests(rendered, mode)
    settings, _ = loaded_settings(docs, mode, tmp_path)
    named = {settings.auth.keys_file, settings.tls.cert_file, settings.tls.key_file, settings.tls.client_ca_file} - {""}
    for owner, spec in pod_specs(docs).items():
        [config] = [volume for volume in spec["volumes"] if volume["name"] == "config"]
        [mount] = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "config"]
        mounted = {f"{mount['mountPath']}/{item['path']}"
                   for source in config["projected"]["sources"] for item in next(iter(source.values()))["items"]}
        assert named | {f"{CONFIG_DIR}/settings.yaml"} == mounted, owner
        # Not subPath mounts: those would never see a renewed certificate or a rotated key.
        assert all("subPath" not in m for m in spec["containers"][0]["volumeMounts"]), owner


def test_keys_secret_loads_through_the_service_loader(rendered):
    secret = one(manifests(rendered, "embedded"), "Secret", f"{FULLNAME}-keys")
    ring = KeyRing.parse(secret["stringData"]["keys.yaml"])
    assert ring.count == 1 and ring.by_hash


def test_settings_change_rolls_the_pods():
    def checksum(*flags: str) -> str:
        pod = one(render("embedded", *flags), "StatefulSet")["spec"]["template"]
        return pod["metadata"]["annotations"]["checksum/config"]

    base = checksum()
    assert checksum("--set", "settings.search.fusion=zscore") != base
    assert checksum("--set", "metrics.serviceMonitor.interval=15s") == base


# --- probes and hardening -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_probes_ask_the_grpc_health_service(rendered, mode):
    container = server_container(manifests(rendered, mode), mode)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if mode == "embedded":
            assert container[probe]["grpc"] == {"port": 50051, "service": ""}, probe
        else:  # TLS on: Kubernetes' gRPC probe cannot do TLS, so it connects instead
            assert container[probe]["tcpSocket"] == {"port": "grpc"}, probe
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] >= 120


@pytest.mark.parametrize("mode", MODES)
def test_pods_are_hardened(rendered, mode):
    for owner, spec in pod_specs(manifests(rendered, mode)).items():
        assert spec["automountServiceAccountToken"] is False, owner
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] and (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (10001, 10001, 10001)
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = spec["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] and context["runAsNonRoot"], owner
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}, owner
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, owner
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), owner
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp[0]["name"]), owner


# --- Service, ServiceMonitor, NetworkPolicy -------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_service_monitor_scrapes_the_metrics_port_once(rendered, mode):
    docs = manifests(rendered, mode)
    monitor = one(docs, "ServiceMonitor")
    selected = [service for service in kinds(docs, "Service")
                if monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()]
    [endpoint] = monitor["spec"]["endpoints"]
    with_port = [s for s in selected if endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}]
    assert [s["metadata"]["name"] for s in with_port] == [FULLNAME]
    assert {p["name"]: p["port"] for p in with_port[0]["spec"]["ports"]} == {"grpc": 50051, "metrics": 9464}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # The metrics' own `namespace` label (a retrieval namespace) must survive the scrape.
    assert endpoint["honorLabels"] is True and endpoint["path"] == "/metrics"


def test_network_policy_admits_only_the_configured_peers(rendered):
    policy = one(manifests(rendered, "scaleOut"), "NetworkPolicy")
    rules = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert rules == {
        "grpc": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "agents"}}}],
        "metrics": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    }
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # No peers means no rule, never a rule with an empty `from` (which would admit everyone).
    policy = one(render("embedded", "--set", "networkPolicy.grpcFrom=null"), "NetworkPolicy")
    assert [rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]] == ["metrics"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]


# --- rules and dashboard: one source, monitoring/ -------------------------------------------------


def test_chart_rules_are_the_promtool_tested_rules(rendered, tmp_path):
    assert CHART_RULES.read_bytes() == RULES.read_bytes(), (
        f"{CHART_RULES.relative_to(ROOT)} differs from {RULES.relative_to(ROOT)}, the rules tested with promtool; "
        f"copy it: cp {RULES.relative_to(ROOT)} {CHART_RULES.relative_to(ROOT)}")
    for mode in MODES:
        rule = one(manifests(rendered, mode), "PrometheusRule")
        assert rule["spec"] == yaml.safe_load(RULES.read_text()), mode
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH: install Debian's prometheus package (scripts/setup.sh does)")
    spec_file = tmp_path / "rules.yml"
    spec_file.write_text(yaml.safe_dump(rule["spec"]))
    proc = subprocess.run([promtool, "check", "rules", str(spec_file)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_dashboard_is_the_monitoring_dashboard(rendered):
    assert CHART_DASHBOARD.read_bytes() == DASHBOARD.read_bytes(), (
        f"{CHART_DASHBOARD.relative_to(ROOT)} differs from {DASHBOARD.relative_to(ROOT)}; "
        f"copy it: cp {DASHBOARD.relative_to(ROOT)} {CHART_DASHBOARD.relative_to(ROOT)}")
    configmap = one(manifests(rendered, "scaleOut"), "ConfigMap", f"{FULLNAME}-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert json.loads(configmap["data"][DASHBOARD.name]) == json.loads(DASHBOARD.read_text())


# --- install-time guards --------------------------------------------------------------------------

GUARDS = {
    "embedded-with-two-replicas": ("embedded", ["--set", "replicas=2"], "mode embedded runs exactly one replica"),
    "scale-out-without-milvus-uri": ("scaleOut", ["--set", "milvus.uri="], "set milvus.uri"),
    "no-api-keys": ("embedded", ["--set", "auth.keys=null"], "refuses to start there without API keys"),
    "a-setting-the-chart-manages": ("embedded", ["--set", "settings.server.port=6000"],
                                    "settings.server.port is set by the chart; use ports.grpc"),
    "the-milvus-token-in-settings": ("scaleOut", ["--set", "settings.milvus.token=x"],
                                     "settings.milvus.token is set by the chart"),
    "tls-without-a-certificate": ("embedded", ["--set", "tls.enabled=true"], "tls.enabled needs tls.existingSecret"),
    "mtls-without-tls": ("embedded", ["--set", "tls.clientAuth.enabled=true", "--set", "tls.clientAuth.ca=x"],
                         "tls.clientAuth.enabled (mTLS) needs tls.enabled"),
    "an-unknown-mode": ("embedded", ["--set", "mode=cluster"], "/mode"),
}


@pytest.mark.parametrize("guard", GUARDS)
def test_guards_refuse_the_install(guard):
    mode, flags, message = GUARDS[guard]
    proc = template(mode, *flags)
    assert proc.returncode != 0, f"{guard}: helm template succeeded"
    assert message in proc.stderr, proc.stderr


# --- checkov --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_reports(rendered, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """checkov's JSON report for each mode's rendered manifests; both runs at once."""
    if not CHECKOV.exists():
        pytest.skip(f"{CHECKOV.relative_to(ROOT)} is missing: run `bash scripts/tools.sh` (CI's setup does)")
    runs = {}
    for mode in MODES:
        folder = tmp_path_factory.mktemp(f"checkov-{mode}")
        (folder / "manifests.yaml").write_text(rendered[mode])
        runs[mode] = subprocess.Popen(
            [CHECKOV, "--config-file", CHECKOV_CONFIG, "--directory", folder, "--output", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reports = {}
    for mode, run in runs.items():
        out, err = run.communicate(timeout=180)
        assert out.strip(), f"checkov ({mode}) printed no report:\n{err}"
        reports[mode] = json.loads(out)
    return reports


@pytest.mark.parametrize("mode", MODES)
def test_checkov_passes(checkov_reports, rendered, mode):
    report = checkov_reports[mode]
    failed = [f"{check['check_id']} {check['check_name']}: {check['resource']}"
              for check in report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    assert report["summary"]["parsing_errors"] == 0
    # It read every object (a manifest it cannot parse would pass by being skipped).
    checked = {check["resource"] for check in report["results"]["passed_checks"]}
    # (checkov has no checks for these kinds.)
    unchecked = CRD_KINDS | {"NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    expected = {f"{doc['kind']}.{doc['metadata']['namespace']}.{doc['metadata']['name']}"
                for doc in manifests(rendered, mode) if doc["kind"] not in unchecked}
    assert expected <= checked, expected - checked


def test_every_skipped_checkov_check_says_why():
    lines = CHECKOV_CONFIG.read_text().splitlines()
    skipped = yaml.safe_load(CHECKOV_CONFIG.read_text())["skip-check"]
    for check in skipped:
        [index] = [i for i, line in enumerate(lines) if re.fullmatch(rf"\s*-\s*{check}\s*", line)]
        assert lines[index - 1].lstrip().startswith("#"), f"{check}: no comment above it saying why it is skipped"
