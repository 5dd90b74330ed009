"""inbound gateway sources (Stripe, Paystack, Flutterwave, Standard Webhooks, HMAC)

Revision ID: 0004s
Revises: 0005c
"""

from alembic import op
import sqlalchemy as sa


revision = '0004s'
down_revision = "0005c"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sources',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('merchant_id', sa.String(length=40), nullable=False),
        sa.Column('provider', sa.String(length=30), nullable=False),
        sa.Column('description', sa.String(length=500), nullable=False),
        sa.Column('callback_token', sa.String(length=64), nullable=False),
        sa.Column('secret', sa.String(length=500), nullable=False),
        sa.Column('previous_secret', sa.String(length=500), nullable=True),
        sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('config', sa.JSON(), nullable=False),
        sa.Column('ip_allowlist_enabled', sa.Boolean(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_sources_merchant_id', 'sources', ['merchant_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sources_merchant_id', table_name='sources')
    op.drop_table('sources')
