"""merchants.config_version: bumped by the database whenever what ingest reads of a merchant changes

Revision ID: 0008v
Revises: 0007c
"""

import sqlalchemy as sa
from alembic import op

revision = "0008v"
down_revision = "0007c"
branch_labels = None
depends_on = None

# PostgreSQL only: there the webhook-service caches merchant profiles and each write checks the
# version it read. SQLite is in process, reads the merchant on every callback and needs no triggers.
TRIGGERS = """
CREATE FUNCTION payhook_merchant_changed() RETURNS trigger AS $$
BEGIN
    NEW.config_version := OLD.config_version + 1;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER merchants_config_version BEFORE UPDATE OF name, notification_email, callback_token, settings,
    enabled ON merchants FOR EACH ROW EXECUTE FUNCTION payhook_merchant_changed();

CREATE FUNCTION payhook_endpoint_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE merchants SET config_version = config_version + 1 WHERE id = OLD.merchant_id;
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.merchant_id IS DISTINCT FROM OLD.merchant_id) THEN
        UPDATE merchants SET config_version = config_version + 1 WHERE id = NEW.merchant_id;
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER endpoints_config_version AFTER INSERT OR DELETE OR UPDATE OF enabled, event_types, merchant_id
    ON endpoints FOR EACH ROW EXECUTE FUNCTION payhook_endpoint_changed();
"""


def upgrade() -> None:
    op.add_column("merchants", sa.Column("config_version", sa.Integer(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TRIGGERS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER endpoints_config_version ON endpoints; DROP FUNCTION payhook_endpoint_changed();"
                   "DROP TRIGGER merchants_config_version ON merchants; DROP FUNCTION payhook_merchant_changed();")
    op.drop_column("merchants", "config_version")
