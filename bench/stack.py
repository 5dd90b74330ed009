"""A whole Payhook stack on free 127.0.0.1 ports, for benchmarks and fault drills.

Its own redis-server (AOF on), a database of its own (a SQLite file in a temp
directory, or a fresh PostgreSQL database created next to the one a URL names),
gunicorn webhook-service, one delivery-worker process per pool as in the
Procfile, and a receiver (nginx when installed, else a small Python server)
that answers 200 to every POST and logs ``<epoch seconds> <webhook-id> <status>``.
Every process can be stopped, killed and started again, and its peak RSS is sampled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import sqlalchemy
from sqlalchemy.engine import make_url

from payhook_shared import ids, signing
from payhook_shared.store import Endpoint, Merchant, Store
from payhook_shared.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

def _per_pool(variable: str) -> dict[str, str]:
    return dict(item.split("=") for item in os.environ.get(variable, "").split(",") if "=" in item)


# The Procfile's pools: (process name, pool, threads). BENCH_THREADS=urgent=4,standard=16 tries other
# thread counts; BENCH_REPLICAS=standard=2 runs that pool as more processes, as its Deployment scales.
_THREADS, _REPLICAS = _per_pool("BENCH_THREADS"), _per_pool("BENCH_REPLICAS")
POOLS = tuple((name if replica == 1 else f"{name}-{replica}", pool, int(_THREADS.get(pool, threads)))
              for name, pool, threads in (("delivery-urgent", "urgent", 4), ("delivery", "standard", 8),
                                          ("delivery-low", "low", 2))
              for replica in range(1, int(_REPLICAS.get(pool, 1)) + 1))

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    log_format hooks '$msec $http_webhook_id $status';
    access_log {dir}/received.log hooks buffer=4k flush=100ms;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type application/json; return 200 '{{"ok":true}}'; }}
    }}
}}
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check()`` until it is truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Proc:
    """One child process (with its children), restartable, with its peak RSS tracked."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path):
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.popen: subprocess.Popen | None = None
        self.log_offset = 0  # where this start's lines begin in the (appended) log
        self.peak_rss = 0
        self.peak_rss_by_pid: dict[int, int] = {}

    def start(self) -> "Proc":
        """Start (again), appending to the log file."""
        with self.log.open("ab") as out:
            self.log_offset = out.tell()
            self.popen = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                          cwd=ROOT, start_new_session=True)
        return self

    def logged(self, text: str) -> bool:
        """Whether this start of the process has logged ``text`` yet."""
        with self.log.open("rb") as log:
            log.seek(self.log_offset)
            return text.encode() in log.read()

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process only (gunicorn and nginx pass it on to their own children)."""
        if self.alive:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 15.0, sig: int | None = None) -> None:
        """``sig`` (SIGTERM when omitted), then SIGKILL the whole group if it does not exit in time."""
        if not self.alive:
            return
        self.popen.send_signal(sig or signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, as far as anyone can tell)."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def sample(self) -> None:
        """Record the RSS of the process and each descendant; keep the peaks."""
        if not self.alive:
            return
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.popen.pid)
            total = 0
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    rss = proc.memory_info().rss
                    total += rss
                    self.peak_rss_by_pid[proc.pid] = max(self.peak_rss_by_pid.get(proc.pid, 0), rss)
            self.peak_rss = max(self.peak_rss, total)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the process and its live descendants."""
        if not self.alive:
            return 0.0
        total = 0.0
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.popen.pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
        return total

    @property
    def peak_rss_per_process(self) -> int:
        """The largest RSS any single process of this group reached."""
        return max(self.peak_rss_by_pid.values(), default=0)


class Database:
    """A database of the stack's own: a temp SQLite file, or a new PostgreSQL database."""

    def __init__(self, base_url: str | None, workdir: Path):
        self.admin_url = None
        if base_url:
            url = make_url(base_url.replace("postgresql://", "postgresql+psycopg://", 1)
                           if base_url.startswith("postgresql://") else base_url)
            self.name = f"payhook_bench_{uuid.uuid4().hex[:8]}"
            self.admin_url = url
            engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
            engine.dispose()
            self.url = url.set(database=self.name).render_as_string(hide_password=False)
            self.kind = "postgresql"
        else:
            self.name = str(workdir / "payhook.db")
            self.url = f"sqlite:///{self.name}"
            self.kind = "sqlite"

    def admin(self, *statements: str) -> None:
        """Run statements on the server's maintenance connection (PostgreSQL only)."""
        engine = sqlalchemy.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
        engine.dispose()

    def block(self) -> None:
        """Make the database unavailable: refuse new connections and end the open ones."""
        self.admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false',
                   f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}'")

    def unblock(self) -> None:
        """Let connections in again."""
        self.admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def drop(self) -> None:
        """Remove the database (PostgreSQL); the SQLite file goes with the temp directory."""
        if self.admin_url is not None:
            with contextlib.suppress(Exception):
                self.unblock()
            self.admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Stack:
    """Redis, database, receiver, webhook-service and delivery workers, all on free ports."""

    def __init__(self, database_url: str | None = None, *, web_workers: int = 2, web_connections: int = 100,
                 worker_env: dict[str, str] | None = None, receiver: str = "auto", keep: bool = False):
        self.workdir = Path(tempfile.mkdtemp(prefix="payhook-bench-"))
        self.keep = keep
        self.db = Database(database_url, self.workdir)
        self.redis_port, self.web_port, self.receiver_port = free_port(), free_port(), free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.receiver_kind = ("nginx" if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else "python") \
            if receiver == "auto" else receiver
        self.received_log = self.workdir / "received.log"
        self.web_workers, self.web_connections = web_workers, web_connections
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DATABASE_URL": self.db.url,
            "REDIS_URL": self.redis_url,
            "BIND": f"127.0.0.1:{self.web_port}",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.web_port}",
            "WEB_WORKERS": str(web_workers),
            "WEB_CONNECTIONS": str(web_connections),
            "ENDPOINT_ALLOWLIST": "127.0.0.0/8",
            "HEALTH_PORT": "0",
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **(worker_env or {}),
        }
        self.procs: dict[str, Proc] = {}
        self.merchant: Merchant | None = None
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    # -- processes ---------------------------------------------------------------------------------
    def _proc(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, env or self.env, self.workdir / f"{name}.log")
        self.procs[name] = proc
        return proc

    def start_redis(self) -> None:
        """redis-server with AOF (fsync every second), in the stack's directory."""
        (self.workdir / "redis").mkdir(exist_ok=True)
        proc = self.procs.get("redis") or self._proc("redis", [
            "redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--dir", str(self.workdir / "redis"),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes"])
        proc.start()
        wait_for(lambda: _listening(self.redis_port), 10, "redis")

    def start_receiver(self) -> None:
        """nginx (or the Python receiver) answering 200 to every POST, logging each webhook-id."""
        if self.receiver_kind == "nginx":
            for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                (self.workdir / sub).mkdir(exist_ok=True)
            conf = self.workdir / "nginx.conf"
            conf.write_text(NGINX_CONF.format(dir=self.workdir, port=self.receiver_port))
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            argv = [nginx, "-c", str(conf), "-e", str(self.workdir / "nginx-error.log")]
        else:
            argv = [sys.executable, "-m", "bench.receiver", str(self.receiver_port), str(self.received_log)]
        proc = self.procs.get("receiver") or self._proc("receiver", argv)
        proc.start()
        wait_for(lambda: _listening(self.receiver_port), 10, "receiver")

    def stop_receiver(self) -> None:
        """Take the receiver down (connections are refused until it starts again)."""
        # nginx's graceful stop: SIGTERM's fast one can drop the access log's buffered lines, each a
        # webhook answered 200 that the drills would then count as lost.
        self.procs["receiver"].stop(sig=signal.SIGQUIT if self.receiver_kind == "nginx" else None)

    def migrate_and_seed(self) -> Merchant:
        """Create the schema and one merchant whose one endpoint is the receiver."""
        upgrade(self.db.url)
        store = Store(self.db.url)
        with store.write() as session:
            merchant = Merchant(id=ids.new_id("mch"), name="Bench Shop", notification_email=None,
                                callback_token=ids.new_token(), settings={})
            session.add(merchant)
            session.add(Endpoint(id=ids.new_id("ep"), merchant_id=merchant.id,
                                 url=f"http://127.0.0.1:{self.receiver_port}/webhooks",
                                 secret=signing.generate_secret()))
        store.dispose()
        self.merchant = merchant
        return merchant

    def start_web(self) -> None:
        """gunicorn webhook-service; ready when /health answers."""
        proc = self.procs.get("web") or self._proc("web", [str(BIN / "payhook-webhook-service")])
        proc.start()
        wait_for(lambda: urllib.request.urlopen(f"{self.base_url}/health", timeout=1).status == 200, 30, "web")

    def start_workers(self, names: tuple[str, ...] | None = None) -> None:
        """One delivery-worker process per pool (as the Procfile runs them)."""
        for name, pool, threads in POOLS:
            if names is not None and name not in names:
                continue
            proc = self.procs.get(name) or self._proc(
                name, [str(BIN / "payhook-delivery-worker")],
                {**self.env, "POOL": pool, "THREADS": str(threads)})
            if not proc.alive:
                proc.start()

    def wait_workers_up(self, timeout: float = 60.0) -> None:
        """Wait until every started delivery worker consumes (it logs "delivery worker up")."""
        for name, _, _ in POOLS:
            if name in self.procs and self.procs[name].alive:
                wait_for(lambda: self.procs[name].logged("delivery worker up"), timeout, name)

    def stop_workers(self) -> None:
        """SIGTERM every delivery worker and wait for it."""
        for name, _, _ in POOLS:
            if name in self.procs:
                self.procs[name].stop()

    def start(self, workers: bool = True) -> "Stack":
        """Bring everything up; ``workers=False`` leaves the delivery workers off (to build a backlog)."""
        self.start_redis()
        self.start_receiver()
        self.migrate_and_seed()
        self.start_web()
        if workers:
            self.start_workers()
        self._sampling.set()
        self._sampler = threading.Thread(target=self._sample_loop, daemon=True)
        self._sampler.start()
        return self

    def _sample_loop(self) -> None:
        while self._sampling.is_set():
            for proc in list(self.procs.values()):
                proc.sample()
            time.sleep(0.25)

    def close(self) -> None:
        """Stop every process, drop the database and remove the temp directory."""
        self._sampling.clear()
        for name in ("web", *(n for n, _, _ in POOLS), "receiver", "redis"):
            if name in self.procs:
                self.procs[name].stop()
        with contextlib.suppress(Exception):
            self.db.drop()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- addresses and observations ----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def callback_path(self, kind: str) -> str:
        """The seeded merchant's callback path for ``kind``."""
        return f"/cb/{self.merchant.id}/{self.merchant.callback_token}/{kind}"

    def received(self) -> list[tuple[float, str, int]]:
        """Every request the receiver logged so far: (epoch seconds, webhook-id, status)."""
        if not self.received_log.exists():
            return []
        rows = []
        for line in self.received_log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] != "-":
                rows.append((float(parts[0]), parts[1], int(parts[2])))
        return rows
