"""``payhook-mail-worker``: run the Dramatiq worker for every mail queue."""

import os
import sys

from payhook_shared.entrypoint import parse_args

from .settings import Settings


def main() -> None:
    """Replace this process with the ``dramatiq`` CLI, configured from Settings."""
    extra = parse_args("payhook-mail-worker", "payhook-mail-worker",
                       "Serve every mail queue (PROCESSES, THREADS and the other settings come from the "
                       "environment) until SIGTERM.", sys.argv[1:], passthrough="dramatiq")
    settings = Settings.from_env()
    dramatiq = os.path.join(os.path.dirname(sys.executable), "dramatiq")
    os.execv(dramatiq, [
        dramatiq, "payhook_mail.actors",
        "--processes", str(settings.processes), "--threads", str(settings.threads),
        *extra,
    ])


if __name__ == "__main__":
    main()
