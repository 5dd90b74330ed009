"""gunicorn settings for the webhook-service, derived from its Settings.

Workers are gevent's: a request waiting on the database, Redis or a merchant's C2B validation URL
is a greenlet, not a thread, so waiting costs no GIL hand-offs between threads. gevent patches the
standard library in each worker before the app is imported, so psycopg, redis-py and urllib3 wait
cooperatively; nothing here may import them first.

Metrics run in prometheus-client's multiprocess mode: every worker writes its samples to
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds them up. The directory is emptied when gunicorn
starts (a stale file from an earlier run would count again), and ``child_exit`` marks a dead worker
so its live gauges stop counting while its counters are kept.
"""

import os
import shutil
import signal
import tempfile

# prometheus-client picks multiprocess mode when it is first imported, and the workers fork from this
# process: the directory must be in the environment before anything here imports it.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _fresh_multiproc_dir() -> str:
    path = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="payhook-metrics-")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    return path


os.environ[MULTIPROC_ENV] = _fresh_multiproc_dir()

from prometheus_client import multiprocess  # noqa: E402 (after the directory is set, see above)

from payhook_webhook.settings import Settings  # noqa: E402

_settings = Settings.from_env()

bind = _settings.bind
workers = _settings.web_workers
# gevent: a request waiting on its shared write (or Redis, or a C2B forward) is a greenlet, not a thread,
# so there are no GIL hand-offs between threads and batches grow (docs/performance.md: gevent vs gthread).
worker_class = "gevent"
worker_connections = _settings.web_connections
# Each worker listens on its own SO_REUSEPORT socket, so the kernel spreads new connections over the
# workers. On one shared socket, a burst of keep-alive connections all went to whichever worker woke
# first, and ingest ran on one core while the other idled (docs/performance.md).
reuse_port = True
graceful_timeout = _settings.graceful_timeout
timeout = 30
keepalive = 5
accesslog = None
# Whether or not an access log is turned on (--access-logfile), callback tokens never reach gunicorn's logs.
logger_class = "payhook_webhook.gunicorn_logging.RedactingLogger"
wsgi_app = "payhook_webhook.wsgi:app"


def child_exit(server, worker) -> None:
    """A worker process ended: its live gauges no longer count."""
    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker) -> None:
    """Start the spool drainer and the reconciler; on a stop (SIGTERM), end the live streams at once.

    A stream (``GET /v1/stream``) never finishes by itself, so a graceful stop would otherwise wait out
    ``GRACEFUL_TIMEOUT`` for every one; ended, their clients reconnect to another
    worker and resume from the store, and the stop waits only for real requests.
    """
    import gevent  # the worker has patched the standard library by now; this file must not import it first

    def stop(sig, frame) -> None:
        worker.handle_exit(sig, frame)
        # Out of the signal handler: ending the streams takes the hub's lock.
        gevent.spawn(worker.wsgi.extensions["payhook.stream_hub"].close_all)

    signal.signal(signal.SIGTERM, stop)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn has it: a stop must not interrupt requests' system calls
    # Every process runs the spool drainer; one at a time (a Redis lock) does the work.
    worker.wsgi.extensions["payhook.spool_drainer"].start()
    # Every process reconciles too, without a leader: each intent is claimed with a lease in the store.
    worker.wsgi.extensions["payhook.reconciler"].start()
