"""The kustomize overlays: rendered by kubectl, valid against the Kubernetes schemas, consistent
with each other and with the services they run."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from payhook_delivery.settings import Settings as DeliverySettings
from payhook_mail.settings import Settings as MailSettings
from payhook_shared.priority import DELIVERY, MAIL, POOLS, pool_queues, queue_names
from payhook_webhook.settings import Settings as WebhookSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"
OVERLAYS = ["dev", "prod", "prod+monitoring"]
# Kinds kubernetes-validate has no schema for (CRDs): checked structurally below.
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
# In prod, payhook-secrets is created outside git with exactly these keys (deploy/README.md).
EXTERNAL_SECRETS = {"payhook-secrets": {"DATABASE_URL", "REDIS_URL", "SMTP_URL", "CONSOLE_SECRET_KEY", "CREDENTIALS_KEYS",
                                       "REDIS_ADDRESS", "REDIS_PASSWORD", "REDIS_TLS"}}
SETTINGS = {"webhook-service": WebhookSettings, "delivery-worker": DeliverySettings, "mail-worker": MailSettings}
# The worker health server's contract (HEALTH_PORT, default 9100): GET /health and /health/ready.
WORKER_HEALTH_PATHS = {"/health", "/health/ready"}
CONTRACT_VARS = {"delivery-worker": {"HEALTH_PORT"}, "mail-worker": {"HEALTH_PORT"}}


def kustomize(path: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: run `make setup` (scripts/ensure-kubectl.sh)")
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    """Every overlay rendered once; prod+monitoring opts prod into the monitoring component."""
    combo = tmp_path_factory.mktemp("prod-monitoring")
    (combo / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # kustomize wants relative paths.
        "resources": [os.path.relpath(K8S / "overlays" / "prod", combo)],
        "components": [os.path.relpath(K8S / "components" / "monitoring", combo)]}))
    return {"dev": kustomize(K8S / "overlays" / "dev"), "prod": kustomize(K8S / "overlays" / "prod"),
            "prod+monitoring": kustomize(combo)}


def of_kind(objects, *kinds):
    return [o for o in objects if o["kind"] in kinds]


def named(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert found, f"no {kind} {name}"
    return found[0]


def payhook_deployments(objects):
    return [d for d in of_kind(objects, "Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/part-of") == "payhook"]


def service_of(workload) -> str:
    return workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]


def matches(selector: dict, labels: dict) -> bool:
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] in ("In", "NotIn", "Exists")
        value = labels.get(expr["key"])
        ok &= {"In": value in expr.get("values", []), "NotIn": value not in expr.get("values", []),
               "Exists": expr["key"] in labels}[expr["operator"]]
    return ok


def container_env(objects, pod_spec, container, placeholder_secrets=True) -> dict[str, str]:
    """The container's environment as the kubelet would build it (ConfigMaps and Secrets resolved)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            env[var["name"]] = "redis://placeholder:6379/0" if var["name"] == "REDIS_URL" else "placeholder"
    return env


def test_every_overlay_renders_the_services(rendered):
    for objects in rendered.values():
        names = {d["metadata"]["name"] for d in payhook_deployments(objects)}
        assert names == {"webhook-service", "mail-worker",
                         *(f"delivery-worker-{pool}" for pool in ("urgent", "standard", "low"))}
        assert named(objects, "Job", "payhook-migrate")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_validate_against_the_kubernetes_schemas(rendered, overlay):
    for obj in rendered[overlay]:
        if obj["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_match_pod_labels(rendered, overlay):
    objects = rendered[overlay]
    for workload in of_kind(objects, "Deployment", "StatefulSet"):
        assert matches(workload["spec"]["selector"], workload["spec"]["template"]["metadata"]["labels"])
    pods = [w["spec"]["template"] for w in of_kind(objects, "Deployment", "StatefulSet")]
    for selecting in of_kind(objects, "Service", "PodDisruptionBudget"):
        selector = selecting["spec"]["selector"]
        selector = selector if "matchLabels" in selector or "matchExpressions" in selector else {"matchLabels": selector}
        assert any(matches(selector, p["metadata"]["labels"]) for p in pods), selecting["metadata"]["name"]
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        hits = [p for p in pods if matches(pdb["spec"]["selector"], p["metadata"]["labels"])]
        assert len(hits) == 1, f"PDB {pdb['metadata']['name']} must cover exactly one workload"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_target_declared_container_ports(rendered, overlay):
    objects = rendered[overlay]
    pods = [w["spec"]["template"] for w in of_kind(objects, "Deployment", "StatefulSet")]
    for service in of_kind(objects, "Service"):
        targets = [p for p in pods if matches({"matchLabels": service["spec"]["selector"]}, p["metadata"]["labels"])]
        for port in service["spec"]["ports"]:
            for pod in targets:
                declared = {(p.get("name"), p["containerPort"]) for c in pod["spec"]["containers"] for p in c["ports"]}
                assert any(port["targetPort"] in (name, number) for name, number in declared), service["metadata"]


def webhook_paths(tmp_path) -> set[str]:
    from payhook_webhook.app import create_app

    app = create_app({"database_url": f"sqlite:///{tmp_path}/routes.db", "redis_url": "redis://127.0.0.1:1/0",
                      "log_format": "text"})
    try:
        return {rule.rule for rule in app.url_map.iter_rules()}
    finally:
        app.extensions["payhook.store"].dispose()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_paths_the_services_serve(rendered, overlay, tmp_path):
    served = {"webhook-service": webhook_paths(tmp_path),
              "delivery-worker": WORKER_HEALTH_PATHS, "mail-worker": WORKER_HEALTH_PATHS}
    for deployment in payhook_deployments(rendered[overlay]):
        service = service_of(deployment)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] in served[service], (deployment["metadata"]["name"], probe)
            assert get["port"] in ports
        env = container_env(rendered[overlay], deployment["spec"]["template"]["spec"], container)
        if service == "webhook-service":
            assert int(env["BIND"].rsplit(":", 1)[1]) == ports[container["readinessProbe"]["httpGet"]["port"]]
        else:
            assert int(env["HEALTH_PORT"]) == ports["health"] == 9100


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_is_set_and_loads(rendered, overlay):
    objects = rendered[overlay]
    workloads = payhook_deployments(objects) + of_kind(objects, "Job")
    for workload in workloads:
        service = "webhook-service" if workload["kind"] == "Job" else service_of(workload)
        cls = SETTINGS[service]
        spec = workload["spec"]["template"]["spec"]
        env = container_env(objects, spec, spec["containers"][0])
        fields = {f.name.upper() for f in dataclasses.fields(cls)}
        assert {"DATABASE_URL", "REDIS_URL"} <= set(env)
        assert not fields - set(env), f"{workload['metadata']['name']} leaves {fields - set(env)} unset"
        assert not set(env) - fields - CONTRACT_VARS.get(service, set()), "a variable no setting reads"
        settings = cls.from_env(env)  # every value parses as its field's type
        grace = spec["terminationGracePeriodSeconds"] if workload["kind"] == "Deployment" else None
        if service == "delivery-worker":
            pool = workload["metadata"]["name"].removeprefix("delivery-worker-")
            assert settings.pool == pool and grace > settings.shutdown_timeout
        elif service == "webhook-service" and grace is not None:
            pre_stop = spec["containers"][0].get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            assert grace > settings.graceful_timeout + pre_stop


def test_procfile_pool_settings_match_the_deployments(rendered):
    from test_deploy_images import procfile

    for process, (env, words) in procfile().items():
        if words == ["payhook-delivery-worker"]:
            deployment = named(rendered["dev"], "Deployment", f"delivery-worker-{env['POOL']}")
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            set_env = container_env(rendered["dev"], deployment["spec"]["template"]["spec"], container)
            # HEALTH_PORT differs on purpose: one machine in make run, one pod each in a cluster.
            pool = {k: v for k, v in env.items() if k != "HEALTH_PORT"}
            assert {k: set_env[k] for k in pool} == pool, process


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secret_references_resolve(rendered, overlay):
    objects = rendered[overlay]
    config = {o["metadata"]["name"]: set(o.get("data", {})) for o in of_kind(objects, "ConfigMap")}
    secrets = {o["metadata"]["name"]: set(o.get("data", {})) | set(o.get("stringData", {}))
               for o in of_kind(objects, "Secret")}
    if overlay.startswith("prod"):
        assert not set(secrets) & set(EXTERNAL_SECRETS), "prod must not commit secret values"
        secrets.update(EXTERNAL_SECRETS)
    referenced = []
    for workload in of_kind(objects, "Deployment", "StatefulSet", "Job"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            for source in container.get("envFrom", []):
                for kind, ref in source.items():
                    referenced.append((kind, ref["name"], None))
            for var in container.get("env", []):
                for kind, ref in var.get("valueFrom", {}).items():
                    referenced.append((kind, ref["name"], ref["key"]))
    for auth in of_kind(objects, "TriggerAuthentication"):
        referenced += [("secretKeyRef", r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]]
    assert referenced
    for kind, name, key in referenced:
        pool = config if kind.startswith("configMap") else secrets
        assert name in pool, f"{kind} {name} is not in the {overlay} overlay"
        assert key is None or key in pool[name], f"{name} has no key {key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_are_hardened(rendered, overlay):
    for workload in payhook_deployments(rendered[overlay]) + of_kind(rendered[overlay], "Job"):
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        mounts = set()
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind])
            mounts |= {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts
        if workload["kind"] == "Deployment":
            sa = named(rendered[overlay], "ServiceAccount", spec["serviceAccountName"])
            assert sa["automountServiceAccountToken"] is False


def test_dev_runs_one_replica_with_in_cluster_redis_and_postgres(rendered):
    objects = rendered["dev"]
    assert all(d["spec"]["replicas"] == 1 for d in payhook_deployments(objects))
    assert not of_kind(objects, "HorizontalPodAutoscaler", "ScaledObject")
    redis = named(objects, "StatefulSet", "redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    for name in ("redis", "postgres"):
        assert named(objects, "StatefulSet", name)["spec"]["volumeClaimTemplates"]
        assert named(objects, "Service", name)
    secret = next(s for s in of_kind(objects, "Secret") if s["metadata"]["name"].startswith("payhook-secrets-"))
    assert {"DATABASE_URL", "REDIS_URL", "SMTP_URL"} <= set(secret["data"])


def test_prod_autoscales_every_service(rendered):
    objects = rendered["prod"]
    hpa = named(objects, "HorizontalPodAutoscaler", "webhook-service")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "webhook-service"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(objects, "ScaledObject")}
    workers = {d["metadata"]["name"] for d in payhook_deployments(objects)} - {"webhook-service"}
    assert set(scaled) == workers
    assert not of_kind(objects, "StatefulSet"), "prod uses managed Redis and PostgreSQL"


def test_scaledobject_queues_are_payhook_queues(rendered):
    """Every trigger watches dramatiq:<queue> of a queue its pool serves; every queue is watched."""
    watched = {DELIVERY: set(), MAIL: set()}
    for scaled in of_kind(rendered["prod"], "ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]["name"]
        family, pool = (MAIL, "all") if target == "mail-worker" else (DELIVERY, target.removeprefix("delivery-worker-"))
        assert pool in POOLS
        assert scaled["spec"]["minReplicaCount"] >= 1, "every worker runs the sweeper: none may scale to zero"
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "redis" and trigger["authenticationRef"]["name"] == "payhook-redis"
            namespace, _, queue = trigger["metadata"]["listName"].partition(":")
            assert namespace == "dramatiq" and queue in pool_queues(family, pool), trigger
            assert int(trigger["metadata"]["listLength"]) > 0
            watched[family].add(queue)
    assert watched == {DELIVERY: set(queue_names(DELIVERY)), MAIL: set(queue_names(MAIL))}


def test_each_pool_scales_on_every_queue_it_consumes(rendered):
    """A pool's backlog on any of its queues adds replicas: one trigger per queue of the pool, the pool read
    from the POOL the target Deployment runs with (the mail-worker consumes every mail queue)."""
    objects = rendered["prod"]
    for scaled in of_kind(objects, "ScaledObject"):
        target = named(objects, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        container = target["spec"]["template"]["spec"]["containers"][0]
        if service_of(target) == "mail-worker":
            consumed = set(queue_names(MAIL))
        else:
            consumed = set(pool_queues(DELIVERY, container_env(objects, target["spec"]["template"]["spec"],
                                                               container)["POOL"]))
        watched = {t["metadata"]["listName"].removeprefix("dramatiq:") for t in scaled["spec"]["triggers"]}
        assert watched == consumed, scaled["metadata"]["name"]


def test_keda_speaks_tls_to_redis_when_the_secret_says_so(rendered):
    """rediss:// needs TLS in KEDA's redis scaler too: the TriggerAuthentication of every trigger maps the
    scaler's tls parameter (enable|disable) from payhook-secrets, and the documented Secret sets it."""
    objects = rendered["prod"]
    auths = {a["metadata"]["name"]: {r["parameter"]: r for r in a["spec"]["secretTargetRef"]}
             for a in of_kind(objects, "TriggerAuthentication")}
    for scaled in of_kind(objects, "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            params = auths[trigger["authenticationRef"]["name"]]
            assert "enableTLS" not in trigger["metadata"], "KEDA refuses tls set in both places"
            assert params["tls"] == {"parameter": "tls", "name": "payhook-secrets", "key": "REDIS_TLS"}
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "REDIS_URL='rediss://" in readme and "REDIS_TLS=enable" in readme


def test_monitoring_component_scrapes_every_service(rendered):
    objects = rendered["prod+monitoring"]
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in payhook_deployments(objects)}
    monitor = named(objects, "ServiceMonitor", "webhook-service")
    service = next(s for s in of_kind(objects, "Service") if matches(monitor["spec"]["selector"], s["metadata"]["labels"]))
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    podmonitor = named(objects, "PodMonitor", "payhook-workers")
    covered = {name for name, pod in pods.items() if matches(podmonitor["spec"]["selector"], pod["metadata"]["labels"])}
    assert covered == set(pods) - {"webhook-service"}
    for name in covered:
        assert podmonitor["spec"]["podMetricsEndpoints"][0]["port"] in {
            p["name"] for p in pods[name]["spec"]["containers"][0]["ports"]}
    rules = named(objects, "PrometheusRule", "payhook")["spec"]["groups"]
    assert all(r["alert"] and r["expr"] for g in rules for r in g["rules"])
    assert not of_kind(rendered["prod"], "ServiceMonitor", "PodMonitor", "PrometheusRule"), "monitoring is opt-in"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_network_policies(rendered, overlay):
    objects = rendered[overlay]
    policies = of_kind(objects, "NetworkPolicy")
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in payhook_deployments(objects)}

    def applying(labels, direction):
        return [p for p in policies if direction in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"], labels)]

    for name, labels in pods.items():
        assert applying(labels, "Ingress") and applying(labels, "Egress"), f"{name} is not default-deny"
        ingress = [rule for p in applying(labels, "Ingress") for rule in p["spec"].get("ingress", [])]
        assert bool(ingress) == (name == "webhook-service"), f"only webhook-service takes ingress, not {name}"
        egress = [rule for p in applying(labels, "Egress") for rule in p["spec"].get("egress", [])]
        ports = {(port.get("protocol"), port["port"]) for rule in egress for port in rule.get("ports", [])}
        assert {("UDP", 53), ("TCP", 53), ("TCP", 5432)} <= ports, name
        assert ("TCP", 6379) in ports or ("TCP", 6380) in ports, name
        internet = [to["ipBlock"]["cidr"] for rule in egress for to in rule.get("to", []) if "ipBlock" in to]
        assert "0.0.0.0/0" in internet, f"{name} cannot reach merchant endpoints on the internet"


# Ranges no Payhook pod may reach except the named backends: private (RFC 1918, ULA), shared (CGNAT),
# link-local (cloud metadata), loopback.
PRIVATE_RANGES = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                                    "169.254.0.0/16", "127.0.0.0/8", "fc00::/7", "fe80::/10")]
# The policies that name the backends (database, Redis, SMTP), and the ports those listen on.
BACKEND_POLICIES = {"payhook-egress-backends", "mail-worker-egress-smtp"}
BACKEND_PORTS = {5432, 6379, 6380, 25, 465, 587}


def _reaches_private(block: dict) -> list[ipaddress._BaseNetwork]:
    """The private ranges an ipBlock lets through (some part of), its excepts taken off."""
    cidr = ipaddress.ip_network(block["cidr"])
    excepts = [ipaddress.ip_network(e) for e in block.get("except", [])]
    reached = []
    for private in PRIVATE_RANGES:
        if private.version != cidr.version or not cidr.overlaps(private):
            continue
        inside = private if private.subnet_of(cidr) else cidr
        if not any(e.version == inside.version and inside.subnet_of(e) for e in excepts):
            reached.append(private)
    return reached


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_egress_refuses_private_ranges_except_the_named_backends(rendered, overlay):
    """Every egress rule names its destinations; private ranges are reachable only in the backends'
    policies, on the backends' ports, to single hosts or small subnets; in-cluster peers are DNS or the
    overlay's own Redis and PostgreSQL pods."""
    for policy in of_kind(rendered[overlay], "NetworkPolicy"):
        name = policy["metadata"]["name"]
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{name}: an egress rule without `to` reaches every address"
            ports = {p["port"] for p in rule.get("ports", [])}
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    reached = _reaches_private(peer["ipBlock"])
                    if not reached:
                        continue
                    network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    assert name in BACKEND_POLICIES, f"{name} opens {reached}"
                    assert ports and ports <= BACKEND_PORTS, f"{name}: {network} on ports {ports or 'all'}"
                    assert network.prefixlen >= (24 if network.version == 4 else 120), f"{name}: {network} is wide"
                elif peer.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"}:
                    assert ports == {53}, name
                else:
                    assert name in BACKEND_POLICIES and "namespaceSelector" not in peer, f"{name}: {peer}"
                    assert ports and ports <= BACKEND_PORTS, name
                    target = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                    assert target in {"redis", "postgres"}, f"{name}: {peer}"


def test_merchant_egress_excepts_every_private_range(rendered):
    policy = named(rendered["prod"], "NetworkPolicy", "payhook-egress-internet")
    blocks = [to["ipBlock"] for rule in policy["spec"]["egress"] for to in rule["to"]]
    assert {b["cidr"] for b in blocks} == {"0.0.0.0/0", "::/0"}
    assert all(_reaches_private(b) == [] for b in blocks)


# Peak RSS measured with the real processes under load (gunicorn with gevent workers, the delivery worker
# with 8 threads, the mail worker's dramatiq parent and one worker process, on PostgreSQL; deploy/README.md,
# "Resources"), in MiB.
WEB_MASTER_RSS, WEB_WORKER_RSS = 34, 92
DELIVERY_RSS = 88
MAIL_PARENT_RSS, MAIL_PROCESS_RSS = 30, 87
MIB = {"Mi": 1, "Gi": 1024}


def _mib(quantity: str) -> float:
    return float(quantity[:-2]) * MIB[quantity[-2:]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_memory_is_sized_from_the_measured_rss(rendered, overlay):
    """Requests cover the measured peak, limits leave half as much again to grow, for the number of
    processes each Deployment runs (WEB_WORKERS, PROCESSES)."""
    objects = rendered[overlay]
    for deployment in payhook_deployments(objects):
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = container_env(objects, pod, container)
        need = {"webhook-service": WEB_MASTER_RSS + WEB_WORKER_RSS * int(env.get("WEB_WORKERS", "0")),
                "delivery-worker": DELIVERY_RSS,
                "mail-worker": MAIL_PARENT_RSS + MAIL_PROCESS_RSS * int(env.get("PROCESSES", "0"))}[service_of(deployment)]
        resources = container["resources"]
        name = deployment["metadata"]["name"]
        assert _mib(resources["requests"]["memory"]) >= need, f"{name}: request below the measured {need} MiB"
        assert _mib(resources["limits"]["memory"]) >= 1.5 * need, f"{name}: limit leaves no room above {need} MiB"


def test_prod_spreads_each_deployment_over_zones_and_nodes(rendered):
    objects = rendered["prod"]
    deployments = payhook_deployments(objects)
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        constraints = {c["topologyKey"]: c for c in deployment["spec"]["template"]["spec"].get(
            "topologySpreadConstraints", [])}
        assert set(constraints) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, deployment["metadata"]["name"]
        for constraint in constraints.values():
            selector = {"matchLabels": {**constraint["labelSelector"]["matchLabels"],
                                        **{k: labels[k] for k in constraint.get("matchLabelKeys", []) if k in labels}}}
            spread = {d["metadata"]["name"] for d in deployments
                      if matches(selector, d["spec"]["template"]["metadata"]["labels"])}
            assert spread == {deployment["metadata"]["name"]}, f"{deployment['metadata']['name']} spreads with {spread}"
        assert constraints["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"


def test_the_cluster_alert_rules_are_the_shipped_rules():
    import yaml

    shipped = yaml.safe_load((ROOT / "deploy/prometheus/payhook-alerts.yml").read_text())["groups"]
    cluster = yaml.safe_load((ROOT / "deploy/k8s/components/monitoring/prometheus-rule.yaml").read_text())
    assert cluster["spec"]["groups"][:len(shipped)] == shipped
