"""daraja credentials and payment intents

Revision ID: 0014d
Revises: 0013h

Two new tables: a merchant's Daraja credentials (secrets as Fernet ciphertext) and the payment
intents of STK Pushes made through Payhook or registered by the merchant.
"""

from alembic import op
import sqlalchemy as sa

import payhook_shared.store.models

revision = "0014d"
down_revision = "0013h"
branch_labels = None
depends_on = None

_UTC = payhook_shared.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "daraja_credentials",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("shortcode", sa.String(length=20), nullable=False),
        sa.Column("consumer_key_enc", sa.Text(), nullable=False),
        sa.Column("consumer_secret_enc", sa.Text(), nullable=False),
        sa.Column("passkey_enc", sa.Text(), nullable=True),
        sa.Column("initiator_name_enc", sa.Text(), nullable=True),
        sa.Column("security_credential_enc", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("merchant_id"),
    )
    op.create_table(
        "payment_intents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("checkout_request_id", sa.String(length=100), nullable=False),
        sa.Column("merchant_request_id", sa.String(length=100), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("account_reference", sa.String(length=40), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("next_check_at", _UTC, nullable=True),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("last_checked_at", _UTC, nullable=True),
        sa.Column("resolved_at", _UTC, nullable=True),
        sa.Column("result_code", sa.String(length=40), nullable=True),
        sa.Column("event_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("checkout_request_id"),
        sa.UniqueConstraint("merchant_id", "idempotency_key", name="uq_payment_intents_merchant_idempotency"),
    )
    op.create_index("ix_payment_intents_merchant_id_id", "payment_intents", ["merchant_id", "id"], unique=False)
    op.create_index("ix_payment_intents_state_next_check_at", "payment_intents", ["state", "next_check_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_payment_intents_state_next_check_at", table_name="payment_intents")
    op.drop_index("ix_payment_intents_merchant_id_id", table_name="payment_intents")
    op.drop_table("payment_intents")
    op.drop_table("daraja_credentials")
