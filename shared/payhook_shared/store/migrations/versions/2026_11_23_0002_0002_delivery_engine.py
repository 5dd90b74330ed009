"""delivery engine: endpoint health and circuit, retry rounds, dead-letter time

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import payhook_shared.store.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC = payhook_shared.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("failing_since", UTC, nullable=True))
        batch.add_column(sa.Column("circuit_open_until", UTC, nullable=True))
        batch.add_column(sa.Column("disabled_at", UTC, nullable=True))
        batch.add_column(sa.Column("disabled_reason", sa.String(200), nullable=True))
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("round_start", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("dead_at", UTC, nullable=True))
        batch.create_index("ix_deliveries_state_dead_at", ["state", "dead_at"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_state_dead_at")
        batch.drop_column("dead_at")
        batch.drop_column("round_start")
    with op.batch_alter_table("endpoints") as batch:
        for column in ("disabled_reason", "disabled_at", "circuit_open_until", "failing_since",
                       "consecutive_failures"):
            batch.drop_column(column)
