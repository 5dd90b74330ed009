"""console: indexes for the overview's delivered count and the search by receipt or reference

Revision ID: 0007c
Revises: 0006c
"""

from alembic import op

revision = "0007c"
down_revision = "0006c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_delivered_at", "deliveries", ["delivered_at"])
    op.create_index("ix_events_receipt", "events", ["receipt"])
    op.create_index("ix_events_reference", "events", ["reference"])


def downgrade() -> None:
    op.drop_index("ix_events_reference", table_name="events")
    op.drop_index("ix_events_receipt", table_name="events")
    op.drop_index("ix_deliveries_delivered_at", table_name="deliveries")
