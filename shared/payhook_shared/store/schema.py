"""Is the database's schema the one this code was written for?

Readiness checks it, so a pod of a new release takes no traffic (and a rolling update does not go on
retiring the old pods) until the migration Job has brought the schema to this code's head revision.
Migrations are additive, so a database *past* this code's head — a newer release migrated it while
this pod still runs — is fine: the revision is then unknown to this code, and the pod stays ready.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from pathlib import Path

from sqlalchemy import inspect

from .db import Store

MIGRATIONS = Path(__file__).with_name("migrations")

log = logging.getLogger(__name__)


class SchemaBehind(Exception):
    """The database has not been migrated to the revision this code expects (yet)."""


_REVISION = re.compile(r"""^(down_revision|revision) = (?:None|["']([^"']+)["'])$""", re.M)


@functools.cache
def code_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision this code ships, its head revisions), read once from the migration scripts.

    Read from each script's ``revision =`` and ``down_revision =`` lines, not through Alembic: importing
    Alembic (and Mako and Pygments with it) costs every service process 12 MB it otherwise never needs.
    tests/shared/test_schema_readiness.py holds the two readings equal.
    """
    revisions, parents = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION.findall(script.read_text(encoding="utf-8")):
            if value:
                (revisions if name == "revision" else parents).add(value)
    return frozenset(revisions), frozenset(revisions - parents)


def check_schema(store: Store) -> None:
    """Return when the database is at this code's head revision (or past it); raise otherwise.

    Raises:
      SchemaBehind: no ``alembic_version`` row, or the database is at an older revision this code knows.
    """
    known, heads = code_revisions()
    # Read alembic_version directly: Alembic's MigrationContext logs at INFO on every call, and this runs
    # on every readiness probe.
    with store.engine.connect() as conn:
        if inspect(conn).has_table("alembic_version"):
            current = frozenset(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
        else:
            current = frozenset()
    if current == heads or (current and not current <= known):
        return
    raise SchemaBehind(f"database at {', '.join(sorted(current)) or 'no revision'}, "
                       f"code expects {', '.join(sorted(heads))}")


def wait_for_schema(store: Store, stop: threading.Event, interval: float = 2.0, report_every: float = 30.0) -> bool:
    """Block until the schema is this code's (True) or ``stop`` is set (False).

    Workers call it before consuming, so a worker started before the migration Job finished never runs
    new code against the old schema. A database that cannot be reached yet is waited for the same way.
    """
    reported = float("-inf")
    while not stop.is_set():
        try:
            check_schema(store)
            return True
        except Exception as exc:
            if time.monotonic() - reported >= report_every:
                log.warning("waiting for the database schema before consuming: %s",
                            exc if isinstance(exc, SchemaBehind) else type(exc).__name__)
                reported = time.monotonic()
        stop.wait(interval)
    return False
