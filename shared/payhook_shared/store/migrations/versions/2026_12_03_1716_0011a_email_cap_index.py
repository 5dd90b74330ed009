"""mail: an index to count a merchant's customer emails sent in the last hour (the mail-worker's cap)

Revision ID: 0011a
Revises: 0011s
"""

from alembic import op

revision = "0011a"
down_revision = "0011s"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_emails_merchant_sent", "emails", ["merchant_id", "template", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_emails_merchant_sent", table_name="emails")
