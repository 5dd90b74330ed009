"""retention: indexes for purging by age and for an event's emails

Revision ID: 0004
Revises: 0003b
"""

from alembic import op

revision = "0004"
down_revision = "0003b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.create_index("ix_emails_event_id", "emails", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_emails_event_id", table_name="emails")
    op.drop_index("ix_events_received_at", table_name="events")
