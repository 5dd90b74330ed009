"""The whole system under observation: real gunicorn (2 processes), real delivery and mail workers.

One stack per module: the webhook-service under gunicorn with two workers in multiprocess mode, a
delivery worker and a mail worker, each a subprocess with JSON logs and its own HEALTH_PORT. Traffic
goes through HTTP; every /metrics is scraped and held against the dashboard, the alert rules and
promtool; /health/queue against Redis and the store; and the logs of one payment are followed
across the three services by its event id.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from factories import callback_url, fixture_bytes, merchant_with_endpoints
from payhook_shared.priority import DELIVERY, MAIL, Priority, queue_name
from payhook_shared.store import Delivery, Email, Event, JobState, Store
from payhook_shared.store.migrate import upgrade
from support import Receiver, free_port, wait_until

pytestmark = pytest.mark.slow  # one real stack per module, scraped

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DASHBOARD = ROOT / "deploy/grafana/payhook-dashboard.json"
ALERTS = ROOT / "deploy/prometheus/payhook-alerts.yml"
PAYMENTS = 8
PHONE = "254708374149"
# Series Prometheus makes itself for every target; no process exposes them.
SYNTHETIC = {"up"}


def _http(method: str, url: str, body: bytes | None = None, content_type: str = "application/json"):
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _answers(url: str) -> bool:
    try:
        return _http("GET", url)[0] == 200
    except OSError:
        return False


class Stack:
    def __init__(self, tmp: Path, redis_url: str):
        self.tmp = tmp
        self.redis_url = redis_url
        self.database_url = f"sqlite:///{tmp / 'payhook.db'}"
        upgrade(self.database_url)
        self.store = Store(self.database_url)
        self.receiver = Receiver().start()
        self.receiver.respond = lambda r: (410, {}, b"gone") if r.path.endswith("/gone") else (200, {}, b"{}")
        self.web_port, self.delivery_port, self.mail_port = free_port(), free_port(), free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, name: str, command: list[str], **env: str) -> None:
        environment = {**os.environ, "DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url,
                       "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", **env}
        environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
        environment.update({k: v for k, v in env.items()})
        self.logs[name] = self.tmp / f"{name}.log"
        with self.logs[name].open("wb") as log:
            self.processes[name] = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True, cwd=self.tmp)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.receiver.stop()
        self.store.dispose()

    def log_lines(self, name: str) -> list[dict]:
        lines = []
        for raw in self.logs[name].read_text(errors="replace").splitlines():
            start = raw.find("{")
            if start < 0:
                continue
            try:
                lines.append(json.loads(raw[start:]))
            except ValueError:
                continue
        return lines

    def scrape(self, url: str) -> str:
        status, body = _http("GET", url)
        assert status == 200, url
        return body.decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_server):
    client = redis_lib.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    tmp = tmp_path_factory.mktemp("observability")
    s = Stack(tmp, redis_server.url)
    merchant, _ = merchant_with_endpoints(s.store, s.receiver.url + "/ok")
    gone_merchant, _ = merchant_with_endpoints(s.store, s.receiver.url + "/gone")
    try:
        s.start("web", [str(BIN / "payhook-webhook-service")], BIND=f"127.0.0.1:{s.web_port}", WEB_WORKERS="2",
                PROMETHEUS_MULTIPROC_DIR=str(tmp / "multiproc"), QUEUE_STATS_TTL="0")
        s.start("delivery", [str(BIN / "payhook-delivery-worker")], HEALTH_PORT=str(s.delivery_port),
                ENDPOINT_ALLOWLIST="127.0.0.0/8", SWEEP_INTERVAL="0.2", THREADS="4")
        s.start("mail", [str(BIN / "payhook-mail-worker")], HEALTH_PORT=str(s.mail_port),
                OUTBOX_DIR=str(tmp / "outbox"), SWEEP_INTERVAL="0.2", THREADS="2")
        for url in (f"{s.web}/health/ready", f"http://127.0.0.1:{s.delivery_port}/health/ready",
                    f"http://127.0.0.1:{s.mail_port}/health/ready"):
            wait_until(lambda: _answers(url), timeout=30, what=f"{url} ready")
        s.outcomes = _drive(s, merchant, gone_merchant)
        wait_until(lambda: _settled(s.store), timeout=30, what="every delivery and email finished")
        yield s
    finally:
        s.stop()


def _drive(s: Stack, merchant, gone_merchant) -> dict[str, int]:
    """Payments, a duplicate, and each kind of invalid callback, all over HTTP."""
    url = s.web + callback_url(merchant, "stk")
    template = fixture_bytes("mpesa/stk_success.json")
    for i in range(PAYMENTS):
        body = template.replace(b"ws_CO_191220191020363925", f"ws_CO_obs{i}".encode())
        assert _http("POST", url, body)[0] == 200
    assert _http("POST", url, template.replace(b"ws_CO_191220191020363925", b"ws_CO_obs0"))[0] == 200
    assert _http("POST", url, b"{not json")[0] == 400
    assert _http("POST", url, b"{}")[0] == 400
    assert _http("POST", url, template, content_type="text/plain")[0] == 415
    assert _http("POST", s.web + f"/cb/{merchant.id}/{'0' * 32}/stk", template)[0] == 404
    assert _http("POST", s.web + callback_url(gone_merchant, "stk"), template)[0] == 200
    return {"accepted": PAYMENTS + 1, "duplicate": 1, "invalid": 3, "refused": 1}


def _settled(store: Store) -> bool:
    with store.read() as session:
        busy = [session.scalar(select(func.count()).select_from(m).where(m.state.in_(
            [JobState.PENDING.value, JobState.SENDING.value]))) for m in (Delivery, Email)]
    return busy == [0, 0]


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)', line)
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def _value(text: str, name: str, **labels: str) -> float:
    return sum(v for n, l, v in _samples(text) if n == name and all(l.get(k) == x for k, x in labels.items()))


def _scrapes(s: Stack) -> dict[str, str]:
    return {"web": s.scrape(f"{s.web}/metrics"),
            "delivery": s.scrape(f"http://127.0.0.1:{s.delivery_port}/metrics"),
            "mail": s.scrape(f"http://127.0.0.1:{s.mail_port}/metrics")}


PROMQL_WORDS = {"sum", "by", "without", "rate", "irate", "increase", "delta", "histogram_quantile", "max", "min",
                "avg", "count", "le", "and", "or", "unless", "on", "ignoring", "group_left", "group_right",
                "absent", "offset", "bool", "topk", "bottomk", "abs", "humanizePercentage", "humanizeDuration"}


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += re.findall(r"expr:\s*>?\s*\n?((?:.+\n?)+?)(?=\s+for:)", ALERTS.read_text())
    return exprs


def _used(expr: str) -> list[tuple[str, set[str]]]:
    """(metric, labels it is filtered or grouped by) for each metric an expression names."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    grouped = set()
    for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", without_strings):
        grouped |= {x.strip() for x in clause.split(",") if x.strip()}
    grouped.discard("le")
    used = []
    for name, matchers in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?", without_strings):
        if name in PROMQL_WORDS or name in grouped or re.fullmatch(r"\d+\w*", name):
            continue
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers))
        used.append((name, labels | grouped))
    return used


def test_dashboard_and_alert_metrics_are_exposed_with_their_labels(stack):
    exposed: dict[str, set[str]] = {}
    for text in _scrapes(stack).values():
        for name, labels, _ in _samples(text):
            exposed.setdefault(name, set()).update(labels)
    expressions = _expressions()
    assert len(expressions) >= 25
    missing = []
    for expr in expressions:
        for name, labels in _used(expr):
            if name in SYNTHETIC:
                continue
            if name not in exposed:
                missing.append(f"{name} (in {expr!r})")
            elif labels - exposed[name]:
                missing.append(f"{name} lacks labels {sorted(labels - exposed[name])} (in {expr!r})")
    assert missing == []


def _answering_processes(stack) -> set[str]:
    return {m.group(1) for p in (Path(stack.tmp) / "multiproc").iterdir()
            if (m := re.search(r"_(\d+)\.db$", p.name))}


def _spread_over_processes(stack) -> None:
    """Concurrent requests until both gunicorn processes have answered some: one alone may take sequential ones."""
    for _ in range(20):
        if len(_answering_processes(stack)) >= 2:
            return
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda _: _http("GET", f"{stack.web}/health"), range(64)))
    raise AssertionError(f"only {_answering_processes(stack)} answered")


def test_web_metrics_add_up_every_gunicorn_process(stack):
    _spread_over_processes(stack)
    for _ in range(6):  # any process may answer a scrape: each must report all of them
        text = stack.scrape(f"{stack.web}/metrics")
        for outcome, expected in stack.outcomes.items():
            assert _value(text, "payhook_callbacks_total", kind="stk", outcome=outcome) == expected, outcome
        assert _value(text, "payhook_events_total", type="mpesa.stk_push", priority="normal") == PAYMENTS + 1
        # Every recorded callback went through a write: new ones, and duplicates found by the write.
        written = stack.outcomes["accepted"] + stack.outcomes.get("duplicate", 0)
        assert _value(text, "payhook_ingest_batch_events_sum") == written
        assert 1 <= _value(text, "payhook_ingest_batch_events_count") <= written
        for reason in ("json", "content_type", "Body"):
            assert _value(text, "payhook_validation_failures_total", kind="stk", reason=reason) == 1, reason
        assert _value(text, "payhook_http_requests_total", route="/cb/<merchant_id>/<token>/stk",
                      method="POST", status="200") == PAYMENTS + 2
        assert _value(text, "payhook_dead_letters", family="delivery") == 1
        assert _value(text, "payhook_endpoints_disabled") == 1


def test_worker_metrics_count_deliveries_and_emails(stack):
    scrapes = _scrapes(stack)
    delivery, mail = scrapes["delivery"], scrapes["mail"]
    assert _value(delivery, "payhook_deliveries_total", outcome="delivered", priority="normal") == PAYMENTS
    assert _value(delivery, "payhook_deliveries_total", outcome="dead", priority="normal") == 1
    assert _value(delivery, "payhook_delivery_attempts_total", category="gone", priority="normal") == 1
    assert _value(delivery, "payhook_delivery_latency_seconds_count", priority="normal") == PAYMENTS
    assert _value(delivery, "dramatiq_messages_total", queue_name="delivery.normal") == PAYMENTS + 1
    assert _value(mail, "payhook_emails_total", template="payment_received", outcome="sent") == PAYMENTS + 1
    for port in (stack.delivery_port, stack.mail_port):
        assert _http("GET", f"http://127.0.0.1:{port}/health")[0] == 200
        status, body = _http("GET", f"http://127.0.0.1:{port}/health/ready")
        assert status == 200 and json.loads(body)["checks"] == {"database": "ok", "schema": "ok", "redis": "ok"}


def test_promtool_accepts_every_scrape_and_the_rules(stack, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (make setup installs Debian's prometheus package when run as root)")
    for name, text in _scrapes(stack).items():
        result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    result = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_health_queue_matches_redis_and_the_store(stack):
    status, body = _http("GET", f"{stack.web}/health/queue")
    assert status == 200
    report = json.loads(body)
    client = redis_lib.Redis.from_url(stack.redis_url)
    try:
        now = time.time()
        with stack.store.read() as session:
            for family, model in ((DELIVERY, Delivery), (MAIL, Email)):
                for priority in Priority:
                    figures = report["queues"][queue_name(family, priority)]
                    rows = session.execute(select(model.state, func.count()).where(
                        model.priority == int(priority)).group_by(model.state)).all()
                    counts = dict(rows)
                    assert figures["waiting"] == client.llen(f"dramatiq:{queue_name(family, priority)}")
                    assert figures["active"] == counts.get(JobState.SENDING.value, 0)
                    assert figures["dead"] == counts.get(JobState.DEAD.value, 0)
                    assert figures["completed"] == counts.get(JobState.DONE.value, 0)
                    delayed = sum(1 for (at,) in session.execute(select(model.next_attempt_at).where(
                        model.priority == int(priority), model.state == JobState.PENDING.value))
                        if at.timestamp() > now)
                    assert figures["delayed"] == delayed
    finally:
        client.close()
    assert report["queues"]["delivery.normal"]["completed"] == PAYMENTS
    assert report["queues"]["delivery.normal"]["dead"] == 1
    assert report["endpoints"] == {"circuit_open": 0, "disabled": 1}


def test_one_payment_is_followed_across_the_three_services_by_its_event_id(stack):
    with stack.store.read() as session:
        event_id = session.scalar(select(Event.id).where(Event.dedupe_key.like("%ws_CO_obs3%")))
    services = {}
    for name in ("web", "delivery", "mail"):
        for line in stack.log_lines(name):
            if line.get("event_id") == event_id:
                services.setdefault(line["service"], []).append(line["message"])
    assert set(services) == {"webhook-service", "delivery-worker", "mail-worker"}, services
    assert any("recorded" in m for m in services["webhook-service"])
    assert any("delivered" in m for m in services["delivery-worker"])
    assert any("sent payment_received" in m for m in services["mail-worker"])
    everything = "".join(path.read_text(errors="replace") for path in stack.logs.values())
    assert PHONE not in everything
    assert "whsec_" not in everything
