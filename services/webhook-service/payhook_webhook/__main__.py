"""``payhook-webhook-service``: run the service under gunicorn (the same command in dev and in the image)."""

import os
import sys

from payhook_shared.entrypoint import parse_args


def main() -> None:
    """Replace this process with gunicorn, configured by ``gunicorn_conf``."""
    extra = parse_args("payhook-webhook-service", "payhook-webhook-service",
                       "Serve provider callbacks and the API under gunicorn (settings come from the "
                       "environment).", sys.argv[1:], passthrough="gunicorn")
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.execv(gunicorn, [gunicorn, "--config", "python:payhook_webhook.gunicorn_conf", *extra])


if __name__ == "__main__":
    main()
