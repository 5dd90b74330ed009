"""status checks: Transaction Status follow-ups of B2C, B2B and reversal QueueTimeOuts

One row per QueueTimeOut event, written with it; the reconciler claims due rows
(``state``, ``next_check_at``) as it claims payment intents, and a status result
arriving finds the row waiting for it (``merchant_id``, ``query_originator_id``).

Revision ID: 0015t
Revises: 0015s
"""

from alembic import op
import sqlalchemy as sa

import payhook_shared.store.models

revision = "0015t"
down_revision = "0015s"
branch_labels = None
depends_on = None

_UTC = payhook_shared.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "status_checks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("originator_conversation_id", sa.String(length=100), nullable=False),
        sa.Column("conversation_id", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("next_check_at", _UTC, nullable=True),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("last_checked_at", _UTC, nullable=True),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("query_originator_id", sa.String(length=100), nullable=True),
        sa.Column("query_conversation_id", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("resolution_event_id", sa.String(length=40), nullable=True),
        sa.Column("resolved_at", _UTC, nullable=True),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_status_checks_state_next_check_at", "status_checks", ["state", "next_check_at"])
    op.create_index("ix_status_checks_merchant_query", "status_checks", ["merchant_id", "query_originator_id"])


def downgrade() -> None:
    op.drop_index("ix_status_checks_merchant_query", table_name="status_checks")
    op.drop_index("ix_status_checks_state_next_check_at", table_name="status_checks")
    op.drop_table("status_checks")
