"""events: how Payhook learned of each event (data.source)

``events.source`` is ``callback`` (sent to Payhook), ``query`` (Payhook asked the
provider: Daraja's STK Push Query, Transaction Status) or ``payhook`` (Payhook's
own operational and test events), delivered as the webhook's ``data.source``.
Rows already there are callbacks by the column's default, except Payhook's own
events and the STK results the reconciler made from a query, which until now
said so in ``details.source``: that marker moves to the column.

The column is nullable: a web process older than it still records (``NULL``, read
as ``callback``) while the migration applies and the processes roll.

Revision ID: 0015s
Revises: 0014e
"""

from alembic import op
import sqlalchemy as sa

revision = "0015s"
down_revision = "0014e"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("source", sa.String(length=16), server_default="callback", nullable=True))
    op.execute("UPDATE events SET source = 'payhook' WHERE provider = 'payhook'")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE events SET source = 'query', details = (details::jsonb - 'source')::json "
                   "WHERE type = 'mpesa.stk_push' AND details ->> 'source' = 'query'")
    else:
        op.execute("UPDATE events SET source = 'query', details = json_remove(details, '$.source') "
                   "WHERE type = 'mpesa.stk_push' AND json_extract(details, '$.source') = 'query'")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""UPDATE events SET details = (details::jsonb || '{"source": "query"}')::json """
                   "WHERE source = 'query' AND type = 'mpesa.stk_push'")
    else:
        op.execute("UPDATE events SET details = json_set(details, '$.source', 'query') "
                   "WHERE source = 'query' AND type = 'mpesa.stk_push'")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("source")
