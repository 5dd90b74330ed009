"""events: indexes to list events of one type or one status newest first

Revision ID: 0014e
Revises: 0014d

Without them, ``GET /v1/events?type=…`` and ``?status=…`` (and the console's
filters) walk the primary key newest first and skip every event of another
type or status: at 1,000,000 events a page of the 1 % status read 10,000 rows
(37 ms on the server), and the rarer the type the longer the walk.
"""

from alembic import op

revision = "0014e"
down_revision = "0014d"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_type_id", "events", ["type", "id"])
    op.create_index("ix_events_status_id", "events", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_status_id", table_name="events")
    op.drop_index("ix_events_type_id", table_name="events")
