"""events API and replays: the provider's own key on events, the endpoint on attempts, replay jobs

``events.provider_key`` holds the key the provider itself gives an event
(``CheckoutRequestID``, ``TransID``, ``ConversationID``, a gateway's event id;
``payhook_shared.provider_keys``), indexed so ``GET /v1/events?reference=``
finds it at any size. ``delivery_attempts.endpoint_id`` copies the delivery's
endpoint, indexed with the attempt's time, so an endpoint's recent attempts and
its stats over an hour or a day read only that endpoint's rows (its failures, from a
partial index of their own). Both are filled
in for the rows already there. ``replays`` holds replay jobs and their progress.

Revision ID: 0012r
Revises: 0011a
"""

from alembic import op
import sqlalchemy as sa

import payhook_shared.store.models

revision = "0012r"
down_revision = "0011a"
branch_labels = None
depends_on = None

UTC = payhook_shared.store.models.UTCDateTime(timezone=True)
# The order payhook_shared.provider_keys.provider_key looks in.
KEYS = ("CheckoutRequestID", "TransID", "ConversationID", "event_id", "id")


def _backfill_provider_key(dialect: str) -> None:
    if dialect == "postgresql":
        lookups = ", ".join(f"provider_ids::jsonb ->> '{key}'" for key in KEYS)
    else:
        lookups = ", ".join(f"json_extract(provider_ids, '$.{key}')" for key in KEYS)
    op.execute(f"UPDATE events SET provider_key = substr(CAST(COALESCE({lookups}) AS TEXT), 1, 200)")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("provider_key", sa.String(length=200), nullable=True))
    _backfill_provider_key(dialect)
    op.create_index("ix_events_provider_key", "events", ["provider_key"])

    with op.batch_alter_table("delivery_attempts") as batch:
        batch.add_column(sa.Column("endpoint_id", sa.String(length=40), nullable=True))
    op.execute("UPDATE delivery_attempts SET endpoint_id = "
               "(SELECT deliveries.endpoint_id FROM deliveries WHERE deliveries.id = delivery_attempts.delivery_id)")
    op.create_index("ix_delivery_attempts_endpoint_started", "delivery_attempts",
                    ["endpoint_id", "started_at", "id"])
    failed = sa.text("category <> 'success'")
    op.create_index("ix_delivery_attempts_endpoint_failed", "delivery_attempts", ["endpoint_id", "started_at", "id"],
                    postgresql_where=failed, sqlite_where=failed)

    dead = sa.text("state = 'dead'")
    op.create_index("ix_deliveries_dead_event_id", "deliveries", ["event_id"], postgresql_where=dead,
                    sqlite_where=dead)
    op.create_index("ix_deliveries_dead_merchant_id_event_id", "deliveries", ["merchant_id", "event_id"],
                    postgresql_where=dead, sqlite_where=dead)

    op.create_table(
        "replays",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("since", UTC, nullable=False),
        sa.Column("until", UTC, nullable=True),
        sa.Column("types", sa.JSON(), nullable=True),
        sa.Column("only_failed", sa.Boolean(), nullable=False),
        sa.Column("requested_by", sa.String(length=40), nullable=False),
        sa.Column("cursor", sa.String(length=40), nullable=True),
        sa.Column("scanned", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("revived", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("queue_name", sa.String(length=64), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["endpoint_id"], ["endpoints.id"]),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_replays_endpoint_id_id", "replays", ["endpoint_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_replays_endpoint_id_id", table_name="replays")
    op.drop_table("replays")
    op.drop_index("ix_deliveries_dead_merchant_id_event_id", table_name="deliveries")
    op.drop_index("ix_deliveries_dead_event_id", table_name="deliveries")
    op.drop_index("ix_delivery_attempts_endpoint_failed", table_name="delivery_attempts")
    op.drop_index("ix_delivery_attempts_endpoint_started", table_name="delivery_attempts")
    with op.batch_alter_table("delivery_attempts") as batch:
        batch.drop_column("endpoint_id")
    op.drop_index("ix_events_provider_key", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("provider_key")
