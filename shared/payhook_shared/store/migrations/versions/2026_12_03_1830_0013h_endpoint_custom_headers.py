"""endpoint custom headers

Revision ID: 0013h
Revises: 0011q

A nullable column: existing endpoints send no custom headers, and adding it
rewrites no rows on PostgreSQL.
"""

from alembic import op
import sqlalchemy as sa


revision = "0013h"
down_revision = "0011q"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("custom_headers", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("custom_headers")
