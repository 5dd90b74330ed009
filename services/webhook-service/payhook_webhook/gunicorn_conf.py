"""gunicorn settings for the webhook-service, derived from its Settings."""

from payhook_webhook.settings import Settings

_settings = Settings.from_env()

bind = _settings.bind
workers = _settings.web_workers
threads = _settings.web_threads
worker_class = "gthread"
graceful_timeout = _settings.graceful_timeout
timeout = 30
keepalive = 5
accesslog = None
wsgi_app = "payhook_webhook.wsgi:app"
