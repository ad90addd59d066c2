"""Tables of the store (SQLAlchemy Core), shared by SQLite and PostgreSQL.

The Alembic migrations in ``migrations/versions`` create exactly these; a test compares them.
States are stored as the ``value`` of the enums in :mod:`newsletter.states`; every timestamp
is a :class:`~newsletter.store.types.UtcDateTime` (aware UTC in and out).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from newsletter.store.types import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


lists = Table(
    "lists",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(100), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    # random, never shown alone; what signed tokens carry instead of the id or the address
    Column("uid", String(32), nullable=False, unique=True),
    # as typed (display); email_normalized is the unique, case-folded key
    Column("email", String(320), nullable=False),
    Column("email_normalized", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=True),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("source", String(100), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("confirmed_at", UtcDateTime(), nullable=True),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("confirmed_at", UtcDateTime(), nullable=True),
    Column("unsubscribed_at", UtcDateTime(), nullable=True),
    # the confirmation request (``confirmations.id``) that last asked for this list while it
    # waits: links of that request and later ones confirm it (consent.link_confirms); NULL for
    # subscriptions made otherwise, or asked for before migration 0007
    Column("requested_in", Integer, nullable=True),
    Index("ix_subscriptions_list_status", "list_id", "status"),
)

# One row per subscribe-form request that asked for a list needing confirmation: its id is
# the number the confirmation link carries, and the rows of the last day cap the emails one
# mailbox gets (``mailbox_hash``: addresses.mailbox_hash, so dotted and tagged variants of one
# Gmail address count together). ``mailed`` is False for a request over the cap (no email
# went out). Ids are never reused (AUTOINCREMENT on SQLite): a link's number must not come
# back. Rows older than a day are deleted; erasing the subscriber deletes theirs.
confirmations = Table(
    "confirmations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("mailbox_hash", String(64), nullable=False),
    Column("mailed", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Index("ix_confirmations_mailbox", "mailbox_hash", "created_at"),
    Index("ix_confirmations_created", "created_at"),
    sqlite_autoincrement=True,
)

# Honoured forever: keyed by a hash of the normalised address so an erased subscriber (GDPR)
# stays suppressed with no personal data left.
suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email_hash", String(64), nullable=False, unique=True),
    Column("email", String(320), nullable=True),
    Column("reason", String(20), nullable=False),
    Column("detail", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

# One row per issue sent (or being sent) to a list; keeps the rendered parts for the archive.
issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(200), nullable=False),
    Column("list_id", Integer, ForeignKey("lists.id"), nullable=False),
    Column("title", String(500), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("issue_date", UtcDateTime(), nullable=False),
    Column("status", String(20), nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    # what the archive's index shows of an issue: its authors (a JSON list) and its preheader
    # as the summary; none for issues recorded before migration 0006
    Column("authors", JSON, nullable=True),
    Column("preheader", Text, nullable=True),
    UniqueConstraint("slug", "list_id", name="uq_issues_slug_list"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_code", Integer, nullable=True),
    Column("last_reply", Text, nullable=True),
    Column("next_attempt_at", UtcDateTime(), nullable=True),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_expires_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("sent_at", UtcDateTime(), nullable=True),
    Index("ix_deliveries_issue_status", "issue_id", "status", "next_attempt_at"),
)

# One row per editor notice the scheduler sent ("skipped: draft", "skipped: stale", ...), so a
# scheduler run every few minutes from cron tells the editor once, not every run.
scheduler_notices = Table(
    "scheduler_notices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("list_slug", String(100), nullable=False),
    Column("issue_slug", String(200), nullable=False),
    Column("due_at", UtcDateTime(), nullable=False),
    Column("reason", String(20), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint(
        "list_slug", "issue_slug", "due_at", "reason", name="uq_scheduler_notices_issue"
    ),
)


# --- analytics (docs/analytics.md) ------------------------------------------------------------

# What a send decided to count, recorded with its issue row when it began: a resumed send
# tracks its remaining copies as it tracked the first, whatever the settings say since.
issue_tracking = Table(
    "issue_tracking",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("clicks", Boolean, nullable=False),
    Column("clicks_in_text", Boolean, nullable=False),
    Column("opens", Boolean, nullable=False),
    Column("per_subscriber", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# The issue's tracked links, numbered in the order they appear: a click token names the issue
# and a position here, never the URL, so the redirect can only go where the issue pointed.
issue_links = Table(
    "issue_links",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    # "html" or "text": which part of the message the link is in
    Column("part", String(10), nullable=False),
    Column("url", Text, nullable=False),
    Column("label", String(300), nullable=False),
)

# Totals per link; they outlive the raw rows below (retention_days).
link_counts = Table(
    "link_counts",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("clicks", Integer, nullable=False, default=0),
    Column("automated", Integer, nullable=False, default=0),
    # distinct recipients; only counted with per_subscriber
    Column("unique_clicks", Integer, nullable=False, default=0),
)

# Totals per issue: opens, and the distinct recipients who clicked anything.
issue_counts = Table(
    "issue_counts",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("opens", Integer, nullable=False, default=0),
    Column("opens_automated", Integer, nullable=False, default=0),
    Column("unique_opens", Integer, nullable=False, default=0),
    Column("unique_clickers", Integer, nullable=False, default=0),
)

# Raw clicks and opens, deleted after retention_days. subscriber_id is NULL unless the send
# counted per subscriber; erasing the subscriber deletes their rows.
hits = Table(
    "hits",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    # "click" or "open"; position is NULL for an open
    Column("kind", String(10), nullable=False),
    Column("position", Integer, nullable=True),
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("automated", Boolean, nullable=False),
    # why a hit counts as automated: head, scanner, burst, early
    Column("reason", String(20), nullable=True),
    Column("at", UtcDateTime(), nullable=False),
    Index("ix_hits_at", "at"),
    Index("ix_hits_issue_subscriber", "issue_id", "subscriber_id"),
)

# Unsubscribes attributed to the issue whose link was used (one per recipient and issue).
# The uid is the random value the token carried; after an erase it points at nobody.
issue_unsubscribes = Table(
    "issue_unsubscribes",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("subscriber_uid", String(32), primary_key=True),
    Column("at", UtcDateTime(), nullable=False),
)

# --- the editors' dashboard -------------------------------------------------------------------

admin_users = Table(
    "admin_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    # argon2id, in the PHC string format argon2-cffi writes
    Column("password_hash", String(200), nullable=False),
    # list slugs this editor may see; NULL means every list (and person-wide actions)
    Column("lists", JSON, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_login_at", UtcDateTime(), nullable=True),
)

# Server-side sessions: the cookie holds a random id, the table only its SHA-256, so a copy
# of the database logs nobody in.
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("admin_users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("seen_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_admin_sessions_user", "user_id"),
)


# --- what comes back (docs/bounces.md) ----------------------------------------------------------

# Everything that came back (a DSN, a complaint, an auto-reply, a webhook event), once each:
# ``digest`` (SHA-256 of the bytes, or of the provider's event id) makes a repeat a no-op. The
# raw report is kept, bounded, for ``bounces.raw_days``; the row itself is kept for good.
inbound_reports = Table(
    "inbound_reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("source", String(20), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("detector", String(30), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("message_id", String(300), nullable=True),
    Column("outcome", String(20), nullable=False),
    # why it is in review, or what was done
    Column("reason", Text, nullable=True),
    Column("raw", LargeBinary, nullable=True),
    Column("raw_size", Integer, nullable=False, default=0),
    Index("ix_inbound_reports_outcome_received", "outcome", "received_at"),
)

# One row per thing a report said about one delivery (or, for a mailto unsubscribe, about one
# subscriber). ``counted`` marks the first event of its class (hard, soft, complaint) for a
# delivery: the one the policy counts, so a report seen twice or a delay followed by the
# failure of the same message counts once.
delivery_events = Table(
    "delivery_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "report_id",
        Integer,
        ForeignKey("inbound_reports.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("occurred_at", UtcDateTime(), nullable=False),
    Column("source", String(20), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("severity", String(10), nullable=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="SET NULL"), nullable=True),
    # an erased subscriber's events go with them: they hold the address in diagnostics
    Column(
        "subscriber_id",
        Integer,
        ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="SET NULL"), nullable=True),
    Column("status", String(20), nullable=True),
    Column("diagnostic", Text, nullable=True),
    Column("reporter", String(200), nullable=True),
    Column("feedback_type", String(20), nullable=True),
    Column("counted", Boolean, nullable=False, default=False),
    # what it did: "suppressed", "unsubscribed", "ledger", or None (recorded only)
    Column("effect", String(20), nullable=True),
    Index("ix_delivery_events_subscriber", "subscriber_id", "occurred_at"),
    Index("ix_delivery_events_issue_kind", "issue_id", "kind"),
    Index("ix_delivery_events_occurred", "occurred_at"),
)
