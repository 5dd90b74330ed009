"""quarantined callbacks: provider callbacks that failed validation, kept to be reprocessed

Revision ID: 0011q
Revises: 0012r
"""

from alembic import op
import sqlalchemy as sa

import payhook_shared.store.models

revision = '0011q'
down_revision = "0012r"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'quarantined_callbacks',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('provider', sa.String(length=40), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('source_id', sa.String(length=40), nullable=True),
        sa.Column('message_id', sa.Text(), nullable=True),
        sa.Column('content_type', sa.String(length=200), nullable=False),
        sa.Column('headers', sa.JSON(), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.Column('reason', sa.String(length=40), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('error_fields', sa.JSON(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('received_at', payhook_shared.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_attempt_at', payhook_shared.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('resolved_at', payhook_shared.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('event_id', sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_quarantined_callbacks_merchant_id_id', 'quarantined_callbacks', ['merchant_id', 'id'],
                    unique=False)
    op.create_index('ix_quarantined_callbacks_state_id', 'quarantined_callbacks', ['state', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_quarantined_callbacks_state_id', table_name='quarantined_callbacks')
    op.drop_index('ix_quarantined_callbacks_merchant_id_id', table_name='quarantined_callbacks')
    op.drop_table('quarantined_callbacks')
