"""``--help`` and ``--version`` for every console script, answered before anything connects.

Each entry point calls ``parse_args`` first thing: a question about the program must never start
consuming queues, open a database pool or bind a port. Arguments it does not know are handed back,
for the entry points that pass them on (gunicorn, the ``dramatiq`` CLI).
"""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version


def distribution_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``unknown`` when it is not installed (a source tree)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def parse_args(prog: str, distribution: str, description: str, argv: list[str],
               passthrough: str | None = None) -> list[str]:
    """Answer ``--help``/``--version`` (printing and exiting 0) or return the arguments left to pass on.

    ``passthrough`` names the program that receives the other arguments; without it, any other argument
    is an error (exit 2), as for a command that takes none.
    """
    epilog = f"Other arguments are passed to {passthrough}." if passthrough else None
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("--version", action="version",
                        version=f"{prog} {distribution_version(distribution)} ({distribution})")
    if passthrough:
        return parser.parse_known_args(argv)[1]
    parser.parse_args(argv)
    return []
