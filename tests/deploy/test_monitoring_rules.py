"""The alert rules under the Prometheus Operator: promtool unit tests in the label shape the monitoring
component produces, monitors naming the jobs the rules expect, runbooks for every alert, and queue and
store gauges (exported alike by every webhook-service replica) never added up across replicas."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MONITORING = K8S / "components" / "monitoring"
PROMTOOL_TESTS = sorted((MONITORING / "tests").glob("*.test.yaml"))
SHIPPED_RULES = ROOT / "deploy" / "prometheus" / "payhook-alerts.yml"
CLUSTER_RULES = MONITORING / "prometheus-rule.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "payhook-dashboard.json"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/payhook/payhook/blob/main/docs/runbooks.md#"
# Gauges every webhook-service replica computes from the same Redis and store snapshot.
REPLICATED_GAUGES = ("payhook_queue_waiting_messages", "payhook_queue_active_jobs", "payhook_queue_delayed_jobs",
                     "payhook_queue_completed_jobs", "payhook_queue_oldest_due_seconds", "payhook_dead_letters",
                     "payhook_endpoints_circuit_open", "payhook_endpoints_disabled")
# Target labels the Prometheus Operator sets (besides job), by monitor kind.
OPERATOR_LABELS = {"ServiceMonitor": {"namespace", "service", "endpoint", "pod", "container", "instance"},
                   "PodMonitor": {"namespace", "endpoint", "pod", "container", "instance"}}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (make setup installs it: scripts/ensure-tools.sh)")
    return path


def run_promtool_tests(rules: Path, workdir: Path) -> subprocess.CompletedProcess:
    """Run every promtool test file of the monitoring component against ``rules``."""
    names = []
    for test in PROMTOOL_TESTS:
        spec = yaml.safe_load(test.read_text())
        spec["rule_files"] = [str(rules)]
        (workdir / test.name).write_text(yaml.safe_dump(spec, sort_keys=False))
        names.append(test.name)
    return subprocess.run([promtool(), "test", "rules", *names], cwd=workdir, capture_output=True, text=True,
                          timeout=120)


def all_rules() -> list[tuple[str, dict]]:
    shipped = yaml.safe_load(SHIPPED_RULES.read_text())["groups"]
    cluster = yaml.safe_load(CLUSTER_RULES.read_text())["spec"]["groups"]
    return ([("payhook-alerts.yml", r) for g in shipped for r in g["rules"]]
            + [("prometheus-rule.yaml", r) for g in cluster for r in g["rules"]])


def test_promtool_rule_tests_exist():
    assert {t.name for t in PROMTOOL_TESTS} >= {"targets.test.yaml", "backlog.test.yaml"}


def test_promtool_rule_tests_pass_on_the_shipped_rules():
    result = subprocess.run([promtool(), "test", "rules", *map(str, PROMTOOL_TESTS)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_tests_pass_on_the_prometheus_rule(tmp_path):
    """The PrometheusRule's own groups (what the Operator loads), not only the file they are copied from."""
    rules = tmp_path / "prometheus-rule.groups.yml"
    rules.write_text(yaml.safe_dump({"groups": yaml.safe_load(CLUSTER_RULES.read_text())["spec"]["groups"]}))
    result = run_promtool_tests(rules, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def monitored(tmp_path_factory) -> list[dict]:
    """prod with the monitoring component, as kubectl renders it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: run `make setup` (scripts/ensure-kubectl.sh)")
    combo = tmp_path_factory.mktemp("prod-monitoring")
    (combo / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "overlays" / "prod", combo)],
        "components": [os.path.relpath(MONITORING, combo)]}))
    result = subprocess.run([kubectl, "kustomize", str(combo)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _selects(selector: dict, labels: dict) -> bool:
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        ok &= labels.get(expr["key"]) in expr["values"]
    return ok


def operator_targets(objects: list[dict]) -> dict[str, dict]:
    """job -> {kind, endpoint, containers} as the Prometheus Operator derives them from each monitor.

    ServiceMonitor: job is the Service's ``jobLabel`` label, else the Service's name. PodMonitor: the pod's
    ``jobLabel`` label, else ``<namespace>/<PodMonitor name>``.
    """
    namespace = next(o["metadata"].get("namespace") for o in objects if o["kind"] == "Deployment")
    targets: dict[str, dict] = {}
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        job_label = monitor["spec"].get("jobLabel")
        for service in (o for o in objects if o["kind"] == "Service"):
            if not _selects(monitor["spec"]["selector"], service["metadata"].get("labels", {})):
                continue
            job = service["metadata"]["labels"].get(job_label, service["metadata"]["name"])
            pods = [d["spec"]["template"]["spec"] for d in objects if d["kind"] == "Deployment"
                    and _selects({"matchLabels": service["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"])]
            targets[job] = {"kind": "ServiceMonitor", "endpoint": monitor["spec"]["endpoints"][0]["port"],
                            "containers": {c["name"] for p in pods for c in p["containers"]},
                            "service": service["metadata"]["name"]}
    for monitor in (o for o in objects if o["kind"] == "PodMonitor"):
        job_label = monitor["spec"].get("jobLabel")
        for deployment in (o for o in objects if o["kind"] == "Deployment"):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if not _selects(monitor["spec"]["selector"], labels):
                continue
            job = labels.get(job_label, f"{namespace}/{monitor['metadata']['name']}")
            entry = targets.setdefault(job, {"kind": "PodMonitor", "endpoint": monitor["spec"]["podMetricsEndpoints"][0]["port"],
                                             "containers": set()})
            entry["containers"] |= {c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    return targets


def test_monitors_name_the_jobs_the_rules_expect(monitored):
    jobs = set(operator_targets(monitored))
    assert jobs == {"payhook-webhook-service", "payhook-delivery-worker", "payhook-mail-worker"}
    local = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    shipped_jobs = {scrape["job_name"] for scrape in local["scrape_configs"]}
    assert shipped_jobs == jobs, "the local scrape config and the monitors name the jobs alike"
    for source, rule in all_rules():
        for matcher, value in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', rule["expr"]):
            pattern = value if matcher == "=~" else re.escape(value)
            assert any(re.fullmatch(pattern, job) for job in jobs), f"{source} {rule['alert']}: no job {value}"


def _series_labels(series: str) -> tuple[str, dict[str, str]]:
    name, _, body = series.partition("{")
    return name.strip(), dict(re.findall(r'(\w+)="([^"]*)"', body))


def test_promtool_series_have_the_operator_label_shape(monitored):
    """The unit tests feed series labelled exactly as the monitors' targets are, so they prove the rules
    match what the Operator scrapes."""
    targets = operator_targets(monitored)
    namespace = next(o["metadata"]["namespace"] for o in monitored if o["kind"] == "Deployment")
    checked = 0
    for test_file in PROMTOOL_TESTS:
        for test in yaml.safe_load(test_file.read_text())["tests"]:
            for series in test["input_series"]:
                _, labels = _series_labels(series["series"])
                assert labels.get("job") in targets, f"{test_file.name}: job {labels.get('job')} is scraped by no monitor"
                target = targets[labels["job"]]
                assert OPERATOR_LABELS[target["kind"]] <= set(labels), f"{test_file.name}: {series['series']}"
                assert labels["namespace"] == namespace and labels["endpoint"] == target["endpoint"]
                assert labels["container"] in target["containers"]
                assert labels.get("service", target.get("service")) == target.get("service")
                checked += 1
    assert checked >= 10


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.M):
        anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower())))
    return anchors


def test_every_alert_links_its_runbook():
    markdown = RUNBOOKS.read_text()
    anchors = _anchors(markdown)
    for source, rule in all_rules():
        url = rule.get("annotations", {}).get("runbook_url", "")
        assert url.startswith(RUNBOOK_BASE), f"{source} {rule['alert']}: runbook_url {url!r}"
        anchor = url.removeprefix(RUNBOOK_BASE)
        assert anchor in anchors, f"{source} {rule['alert']}: no section #{anchor} in docs/runbooks.md"


def test_every_runbook_says_what_it_means_how_to_confirm_and_what_to_do():
    sections = re.split(r"^## ", RUNBOOKS.read_text(), flags=re.M)[1:]
    alerts = {rule["alert"] for _, rule in all_rules()}
    documented = {}
    for section in sections:
        title, _, body = section.partition("\n")
        documented[title.strip()] = body
    assert alerts <= set(documented), sorted(alerts - set(documented))
    for alert in alerts:
        for part in ("**Meaning.**", "**Confirm.**", "**Act.**"):
            assert part in documented[alert], f"runbook {alert} lacks {part}"


_AGGREGATIONS = {"sum", "max", "min", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "group"}


def _enclosing_aggregation(expr: str, position: int) -> str | None:
    """The aggregation operator whose argument holds the metric at ``position`` (skipping functions)."""
    depth = 0
    i = position
    while i > 0:
        i -= 1
        if expr[i] == ")":
            depth += 1
        elif expr[i] == "(":
            if depth:
                depth -= 1
                continue
            head = expr[:i].rstrip()
            head = re.sub(r"\b(?:by|without)\s*\([^)]*\)\s*$", "", head).rstrip()
            word = re.search(r"(\w+)$", head)
            if word and word.group(1) in _AGGREGATIONS:
                return word.group(1)
    return None


def replica_sums(expr: str) -> list[str]:
    """Replicated gauges in ``expr`` not first reduced with max (or min/avg) across replicas."""
    wrong = []
    for gauge in REPLICATED_GAUGES:
        for m in re.finditer(rf"\b{gauge}\b", expr):
            if _enclosing_aggregation(expr, m.start()) not in {"max", "min", "avg"}:
                wrong.append(f"{gauge} in {expr!r}")
    return wrong


def test_the_replica_check_recognises_sums():
    assert replica_sums("sum by (family, priority) (payhook_queue_waiting_messages) > 1000")
    assert replica_sums("payhook_endpoints_circuit_open > 0")
    assert replica_sums("sum by (family) (delta(payhook_dead_letters[30m]))")
    assert not replica_sums("sum by (family) (max by (family, priority) (delta(payhook_dead_letters[30m])))")
    assert not replica_sums('max by (priority) (payhook_queue_waiting_messages{family="mail"})')


def test_rules_do_not_add_up_replicated_gauges():
    wrong = [f"{source} {rule['alert']}: {w}" for source, rule in all_rules() for w in replica_sums(rule["expr"])]
    assert wrong == []


def test_dashboard_does_not_add_up_replicated_gauges():
    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", []) if "expr" in t]
    assert any("payhook_queue_waiting_messages" in e for e in exprs)
    assert [w for e in exprs for w in replica_sums(e)] == []
