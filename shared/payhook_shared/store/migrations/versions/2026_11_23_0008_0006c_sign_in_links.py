"""console sign-in links emailed on request

Revision ID: 0006c
Revises: 0004s
"""

from alembic import op
import sqlalchemy as sa

import payhook_shared.store.models

revision = '0006c'
down_revision = "0004s"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sign_in_links',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=True),
        sa.Column('requested_from', sa.String(length=64), nullable=False),
        sa.Column('created_at', payhook_shared.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', payhook_shared.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('used_at', payhook_shared.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_sign_in_links_expires_at', 'sign_in_links', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sign_in_links_expires_at', table_name='sign_in_links')
    op.drop_table('sign_in_links')
