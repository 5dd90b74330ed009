"""merchants can be disabled

Revision ID: 0003b
Revises: 0003r
"""

from alembic import op
import sqlalchemy as sa


revision = '0003b'
down_revision = "0003r"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enabled', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.drop_column('enabled')
