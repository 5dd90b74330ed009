"""Run the store's Alembic migrations from code (``make run``, tests, the migration Job)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from .db import normalise_url, private_sqlite_file
from .schema import MIGRATIONS


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Dated file names sort in the order the revisions apply (tests/shared/test_migrations.py checks it).
    cfg.set_main_option("file_template",
                        "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d_%%(rev)s_%%(slug)s")
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``."""
    private_sqlite_file(url)
    command.upgrade(alembic_config(url), revision)
