"""Prometheus rules, their promtool unit tests, the example Prometheus config and the
Grafana dashboard, checked against the metrics contract in docs/metrics.md and the
runbooks in docs/runbooks.md.

promtool comes from Debian's `prometheus` package, which CI installs; without it
these tests fail rather than skip, so that a CI image missing it is noticed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "monitoring" / "prometheus"
RULES = PROMETHEUS / "rules" / "retrieval-slo.rules.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
FIXTURE_RULES = sorted((PROMETHEUS / "tests" / "fixtures").glob("*.yml"))
EXAMPLE_CONFIG = PROMETHEUS / "prometheus.example.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "retrieval-svc-dashboard.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOKS = ROOT / "docs" / "runbooks.md"

# Series that operators record themselves to override a default (see the
# retrieval-quality group of the rules file); the rules read them if present.
OPERATOR_RECORDS = {"retrieval:eval_quality_floor:override"}
SEVERITIES = {"page", "ticket"}


# --- helpers ------------------------------------------------------------------------


def find_promtool() -> str:
    # A plain function, not a fixture, so that a missing promtool is a test
    # failure and not a fixture error.
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH. Install Debian's prometheus package, which provides it: "
            "apt-get update && apt-get install -y --no-install-recommends prometheus"
        )
    return path


def run_promtool(*args: str | Path) -> str:
    proc = subprocess.run(
        [find_promtool(), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(map(str, args))} failed:\n{output}"
    return output


def load_rules(path: Path = RULES) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alerting_rules() -> list[dict]:
    return [rule for rule in load_rules() if "alert" in rule]


def documented_metrics() -> set[str]:
    """Series names the service exports, from the table in docs/metrics.md: the
    documented name, plus _bucket/_count/_sum for histograms."""
    names = set()
    for line in METRICS_DOC.read_text().splitlines():
        match = re.match(r"\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*(\w+)\s*\|", line)
        if not match:
            continue
        name, kind = match.groups()
        names.add(name)
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
    return names


def recorded_names() -> set[str]:
    return {rule["record"] for rule in load_rules() if "record" in rule}


_PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (a small lexer, not a parser:
    enough for the expressions in this repository)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range and subquery selectors
    expr = re.sub(r"\$\{?\w+\}?", " ", expr)  # Grafana variables
    # Label lists of grouping and vector-matching modifiers.
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", expr):
        word, call = match.groups()
        if call is None and word.lower() not in _PROMQL_KEYWORDS:
            names.add(word)
    return names


def markdown_anchors(path: Path) -> set[str]:
    """GitHub-style anchors of the headings of a Markdown file (fenced code skipped)."""
    anchors, fenced = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6}\s+(.*)", line)):
            text = match.group(1).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def dashboard_panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels inside collapsed rows
    return panels


# --- the helpers themselves ------------------------------------------------------------


def test_promql_metric_names_finds_selectors_only():
    expr = (
        'sum by (job, le) (rate(retrieval_stage_duration_seconds_bucket{stage="total", le="0.25"}[5m]))'
        " / on (job) group_left job:ratio:rate5m offset 1h > bool 1e-3"
        ' or time() - retrieval_eval_last_run_timestamp_seconds{query_set=~"$query_set"}'
        " and vector(0.5) unless histogram_quantile(0.95, x_bucket[$__rate_interval])"
    )
    assert promql_metric_names(expr) == {
        "retrieval_stage_duration_seconds_bucket", "job:ratio:rate5m",
        "retrieval_eval_last_run_timestamp_seconds", "x_bucket",
    }


def test_documented_metrics_are_parsed_from_the_table():
    names = documented_metrics()
    assert {"retrieval_requests_total", "retrieval_stage_duration_seconds_bucket",
            "retrieval_eval_quality", "retrieval_batch_size_count"} <= names
    assert "retrieval_eval_quality_bucket" not in names  # a gauge


# --- rules ---------------------------------------------------------------------------


def test_rule_files_pass_promtool_check():
    run_promtool("check", "rules", RULES, *FIXTURE_RULES)


def test_rule_unit_tests_pass():
    assert RULE_TESTS, "no promtool unit tests in monitoring/prometheus/tests/"
    output = run_promtool("test", "rules", *RULE_TESTS)
    assert output.count("SUCCESS") == len(RULE_TESTS), output


def test_generated_burn_rate_tests_are_up_to_date():
    path = PROMETHEUS / "tests" / "burn_rate_tests.py"
    spec = importlib.util.spec_from_file_location("burn_rate_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for generated, text in module.render().items():
        assert generated.read_text() == text, (
            f"{generated.name} differs from what {path.name} writes; run python3 {path.relative_to(ROOT)}"
        )


def test_example_config_passes_promtool_check():
    output = run_promtool("check", "config", EXAMPLE_CONFIG)
    assert "1 rule files found" in output, output


def test_rule_expressions_use_only_documented_metrics_and_recorded_series():
    known = documented_metrics() | recorded_names() | OPERATOR_RECORDS
    for rule in load_rules():
        unknown = promql_metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown metrics {unknown}"


def test_every_alert_has_severity_summary_description_and_runbook():
    anchors = markdown_anchors(RUNBOOKS)
    rules = alerting_rules()
    assert rules
    for rule in rules:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), f"{name}: no summary"
        assert annotations.get("description"), f"{name}: no description"
        url = annotations.get("runbook_url", "")
        path, _, anchor = url.partition("#")
        assert path == "docs/runbooks.md", f"{name}: runbook_url {url!r}"
        assert anchor == name.lower(), f"{name}: runbook anchor {anchor!r}"
        assert anchor in anchors, f"{name}: docs/runbooks.md has no section #{anchor}"


def test_every_alerting_rule_is_unit_tested_firing_and_quiet():
    """Each alerting rule (rules sharing an alert name differ by labels, e.g. the
    burn-rate windows) must appear in some promtool test as an expected alert, and
    in some test of its alert name where it is expected not to fire."""
    cases: list[tuple[str, list[dict]]] = []
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                expected = [a.get("exp_labels", {}) for a in case.get("exp_alerts") or []]
                cases.append((case["alertname"], expected))
    for rule in alerting_rules():
        labels = {k: str(v) for k, v in rule.get("labels", {}).items()}

        def matches(exp_labels: dict, labels: dict = labels) -> bool:
            return all(str(exp_labels.get(k)) == v for k, v in labels.items())

        same_name = [expected for name, expected in cases if name == rule["alert"]]
        what = f"{rule['alert']} {labels}"
        assert any(any(map(matches, expected)) for expected in same_name), f"{what}: never fires in a test"
        assert any(not any(map(matches, expected)) for expected in same_name), f"{what}: never quiet in a test"


def test_runbooks_have_one_section_per_alert():
    alert_names = {rule["alert"] for rule in alerting_rules()}
    sections = set(re.findall(r"^## (\S+)\s*$", RUNBOOKS.read_text(), flags=re.MULTILINE))
    assert sections == alert_names


# --- dashboard ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_has_datasource_and_namespace_variables(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["type"] == "query"
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] and dashboard["title"]


def test_dashboard_panels_query_the_templated_datasource(dashboard):
    panels = dashboard_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    queried = [p for p in panels if p["type"] != "row"]
    assert len(queried) >= 10
    for panel in queried:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']}: no queries"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_dashboard_queries_are_valid_promql(dashboard, tmp_path):
    """promtool parses every panel query, written out as a recording rule with the
    Grafana variables filled in."""
    rules = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m")
            expr = re.sub(r"\$\{?(job|namespace|query_set)\}?", ".*", expr)
            rules.append({"record": f"dashboard:panel_{panel['id']}:{target['refId']}", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool("check", "rules", path)


def test_dashboard_queries_use_only_documented_metrics_and_recorded_series(dashboard):
    known = documented_metrics() | recorded_names()
    namespaced = {"retrieval_documents", "retrieval_chunks", "retrieval_index_entries",
                  "retrieval_index_missing_chunks", "retrieval_oldest_chunk_age_seconds",
                  "retrieval_chunks_embedded_total",
                  "namespace:retrieval_served_chunk_age_seconds:p95_rate30m",
                  "namespace:retrieval_source_to_searchable_seconds:p95_rate1h"}
    used = set()
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            names = promql_metric_names(target["expr"])
            assert names, f"{panel['title']}: {target['expr']!r} selects no metric"
            assert not names - known, f"{panel['title']}: unknown metrics {names - known}"
            if names & namespaced:
                assert 'namespace=~"$namespace"' in target["expr"], f"{panel['title']}: not filtered by $namespace"
            used |= names
    # The panels the dashboard promises.
    for name in ("retrieval_requests_total", "retrieval_stage_duration_seconds_bucket",
                 "retrieval_index_entries", "retrieval_index_missing_chunks",
                 "retrieval_oldest_chunk_age_seconds", "retrieval_eval_quality",
                 "retrieval_eval_last_run_timestamp_seconds", "retrieval_rerank_fallbacks_total",
                 "retrieval_batch_size_bucket",
                 "namespace:retrieval_served_chunk_age_seconds:p95_rate30m",
                 "namespace:retrieval_source_to_searchable_seconds:p95_rate1h"):
        assert name in used, f"no panel shows {name}"
