"""``payhook-mail-worker``: run the Dramatiq worker for every mail queue."""

import os
import sys

from .settings import Settings


def main() -> None:
    """Replace this process with the ``dramatiq`` CLI, configured from Settings."""
    settings = Settings.from_env()
    dramatiq = os.path.join(os.path.dirname(sys.executable), "dramatiq")
    os.execv(dramatiq, [
        dramatiq, "payhook_mail.app:setup",
        "--processes", str(settings.processes), "--threads", str(settings.threads),
        *sys.argv[1:],
    ])


if __name__ == "__main__":
    main()
