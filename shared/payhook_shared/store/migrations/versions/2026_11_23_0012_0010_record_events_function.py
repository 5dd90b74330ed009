"""payhook_record_events(): ingest's one write, as a function the database plans once per connection

The webhook-service writes a batch of events, their deliveries and their
emails in one statement. Sent as plain SQL, that statement (three inserts in
CTEs) was parsed and planned on every call, which cost the database more CPU
than the writing itself. PL/pgSQL keeps the plans of its statements for the life
of the server connection, so called as a function the same write is planned once
per connection (docs/performance.md has the figures), and nothing is asked of
the client session: it works behind PgBouncer in transaction mode, where
prepared statements would not.

Rows arrive as JSON arrays keyed by column name and become rows of each table's
own type (``json_populate_record``), so a column added later needs no change
here. The deliveries and emails insert only for events the event insert
returned, so a duplicate event (its dedupe key taken) writes nothing. An event
inserts only while its merchant's ``config_version`` is the ``profile_version``
it was planned from; the merchants' current versions are returned so the
caller can tell a stale profile from a duplicate. Events and emails insert in
key order, so two batches racing on the same keys wait instead of deadlocking.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE FUNCTION payhook_record_events(events json, deliveries json, emails json)
RETURNS TABLE (kind text, row_id varchar, version integer)
LANGUAGE plpgsql AS $fn$
BEGIN
    RETURN QUERY
    WITH batch AS (
        SELECT json_populate_record(NULL::events, j) AS e, (j ->> 'profile_version')::integer AS profile_version
        FROM json_array_elements(events) AS j
    ), new_events AS (
        INSERT INTO events
        SELECT (b.e).* FROM batch AS b
        JOIN merchants AS m ON m.id = (b.e).merchant_id AND m.config_version = b.profile_version
        ORDER BY (b.e).merchant_id, (b.e).dedupe_key
        ON CONFLICT (merchant_id, dedupe_key) DO NOTHING
        RETURNING events.id
    ), new_deliveries AS (
        INSERT INTO deliveries
        SELECT d.* FROM json_populate_recordset(NULL::deliveries, deliveries) AS d
        WHERE d.event_id IN (SELECT n.id FROM new_events AS n)
    ), new_emails AS (
        INSERT INTO emails
        SELECT m.* FROM json_populate_recordset(NULL::emails, emails) AS m
        WHERE m.event_id IN (SELECT n.id FROM new_events AS n)
        ORDER BY m.dedupe_key
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING emails.id
    )
    SELECT 'event'::text, n.id, NULL::integer FROM new_events AS n
    UNION ALL SELECT 'email', n.id, NULL FROM new_emails AS n
    UNION ALL SELECT 'version', m.id, m.config_version FROM merchants AS m
        WHERE m.id IN (SELECT (b.e).merchant_id FROM batch AS b);
END
$fn$;
"""


def upgrade() -> None:
    # PostgreSQL only: SQLite is in process, with no round trips or planning to save.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION payhook_record_events(json, json, json)")
