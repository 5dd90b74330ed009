"""endpoint rate limit and concurrency cap

Revision ID: 0003r
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = '0003r'
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rate_limit_per_second', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('max_in_flight', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.drop_column('max_in_flight')
        batch_op.drop_column('rate_limit_per_second')
