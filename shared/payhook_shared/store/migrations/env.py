"""Alembic environment: migrations run online against the configured URL."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from payhook_shared.store.models import Base

config = context.config
connectable = config.attributes.get("connection") or engine_from_config(
    config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool,
)


def _run(connection):
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if hasattr(connectable, "connect"):
    with connectable.connect() as conn:
        _run(conn)
else:
    _run(connectable)
