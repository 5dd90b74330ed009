"""``payhook-webhook-service``: run the service under gunicorn (the same command in dev and in the image)."""

import os
import sys


def main() -> None:
    """Replace this process with gunicorn, configured by ``gunicorn_conf``."""
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.execv(gunicorn, [gunicorn, "--config", "python:payhook_webhook.gunicorn_conf", *sys.argv[1:]])


if __name__ == "__main__":
    main()
