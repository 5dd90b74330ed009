"""store at scale: the console's phone-suffix search and its dead letters, on a million events

Found by ``make bench-store``: a search by phone suffix read the whole events
table, and dead letters by category or per merchant walked most of the
deliveries; both now have an index of their own (the dead-letter ones partial:
a few percent of the rows).

Revision ID: 0009
Revises: 0008v
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008v"
branch_labels = None
depends_on = None

DEAD_ONLY = sa.text("state = 'dead'")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_events_phone_reversed", "events", [sa.text("reverse(phone) text_pattern_ops")])
    op.create_index("ix_deliveries_dead_id", "deliveries", ["id"], postgresql_where=DEAD_ONLY,
                    sqlite_where=DEAD_ONLY)
    op.create_index("ix_deliveries_dead_merchant_id_id", "deliveries", ["merchant_id", "id"],
                    postgresql_where=DEAD_ONLY, sqlite_where=DEAD_ONLY)


def downgrade() -> None:
    op.drop_index("ix_deliveries_dead_merchant_id_id", table_name="deliveries")
    op.drop_index("ix_deliveries_dead_id", table_name="deliveries")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_events_phone_reversed", table_name="events")
