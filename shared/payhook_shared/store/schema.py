"""Is the database's schema the one this code was written for?

Readiness checks it, so a pod of a new release takes no traffic (and a rolling update does not go on
retiring the old pods) until the migration Job has brought the schema to this code's head revision.
Migrations are additive, so a database *past* this code's head — a newer release migrated it while
this pod still runs — is fine: the revision is then unknown to this code, and the pod stays ready.
"""

from __future__ import annotations

import functools

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .db import Store
from .migrate import MIGRATIONS


class SchemaBehind(Exception):
    """The database has not been migrated to the revision this code expects (yet)."""


@functools.cache
def code_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision this code ships, its head revisions), read once from the migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    return frozenset(r.revision for r in script.walk_revisions()), frozenset(script.get_heads())


def check_schema(store: Store) -> None:
    """Return when the database is at this code's head revision (or past it); raise otherwise.

    Raises:
      SchemaBehind: no ``alembic_version`` row, or the database is at an older revision this code knows.
    """
    known, heads = code_revisions()
    with store.engine.connect() as conn:
        current = frozenset(MigrationContext.configure(conn).get_current_heads())
    if current == heads or (current and not current <= known):
        return
    raise SchemaBehind(f"database at {', '.join(sorted(current)) or 'no revision'}, "
                       f"code expects {', '.join(sorted(heads))}")
