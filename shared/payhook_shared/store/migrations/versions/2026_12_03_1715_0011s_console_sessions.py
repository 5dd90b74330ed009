"""console sessions kept in the store; API key hints and last use; sign-in tokens minted by the mail-worker

``console_sessions`` holds one row per signed-in console session (the cookie
carries only a random token whose SHA-256 is stored), so sign-out and key
revocation end a session on the server. ``api_keys`` gains the key's last four
characters and when it was last used, for listing keys. ``sign_in_links`` rows
are created without a token (the mail-worker mints it when sending), so
``token_hash`` may be empty; sign-in emails written before this revision
carried their raw links in ``emails.context``, and those links are blanked here.

Revision ID: 0011s
Revises: 0010
"""

from alembic import op
import sqlalchemy as sa

import payhook_shared.store.models

revision = "0011s"
down_revision = "0010"
branch_labels = None
depends_on = None

UTC = payhook_shared.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", sa.String(length=40), nullable=True),
        sa.Column("sign_in_link_id", sa.String(length=40), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("merchant_id", sa.String(length=40), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("last_seen_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_console_sessions_api_key_id", "console_sessions", ["api_key_id"], unique=False)
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"], unique=False)
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("hint", sa.String(length=8), nullable=False, server_default=""))
        batch.add_column(sa.Column("last_used_at", UTC, nullable=True))
    with op.batch_alter_table("sign_in_links") as batch:
        batch.alter_column("token_hash", existing_type=sa.String(length=64), nullable=True)
    _blank_old_sign_in_emails()


def _blank_old_sign_in_emails() -> None:
    """Sign-in emails from before this revision hold usable links until sent: remove them."""
    emails = sa.table("emails", sa.column("id", sa.String), sa.column("template", sa.String),
                      sa.column("context", sa.JSON))
    conn = op.get_bind()
    for row in conn.execute(sa.select(emails.c.id, emails.c.context).where(emails.c.template == "sign_in_link")):
        context = dict(row.context or {})
        if context.get("links"):
            context["links"] = []
            conn.execute(emails.update().where(emails.c.id == row.id).values(context=context))


def downgrade() -> None:
    with op.batch_alter_table("sign_in_links") as batch:
        batch.alter_column("token_hash", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("hint")
    op.drop_index("ix_console_sessions_expires_at", table_name="console_sessions")
    op.drop_index("ix_console_sessions_api_key_id", table_name="console_sessions")
    op.drop_table("console_sessions")
