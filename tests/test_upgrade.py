"""``newsletter init`` upgrades a database made by the previous release (0.1.0, migration 0002).

The database is built at 0002 by the migrations themselves and filled in that schema's own
columns: lists, subscribers (confirmed, waiting, unsubscribed, suppressed), two issues with
their ledger rows (one finished, one interrupted with a row still pending and one leased),
a scheduler notice. After ``newsletter init`` every row is there as it was, the schema is at
the head revision, and the current code carries on from that data: the interrupted send
resumes with only its pending reader, the finished one is not sent again, the suppression
still holds and an unsubscribe link signed for a 0.1.0 subscriber still works.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter import urls
from newsletter.config import load_settings
from newsletter.issues import load_issue
from newsletter.rendering import Renderer
from newsletter.store.database import alembic_config, make_engine
from newsletter.tokens import TokenPurpose, make_token
from newsletter.web.app import create_app
from tests.conftest import REPO, TEST_CONFIG, TEST_SECRET, run_cli, write_config
from tests.smtpd import SMTPServer

# the head revision of the last release (CHANGELOG.md, 0.1.0): what a database out there is at
PREVIOUS_RELEASE_HEAD = "0002"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ISSUE = "2026-11-20-flood-barrier-vote.md"

# the 0002 schema's tables, with only the columns that release had (typed for binding)
DT = sa.DateTime(timezone=True)
lists = sa.table(
    "lists", sa.column("id"), sa.column("slug"), sa.column("name"), sa.column("created_at", DT)
)
subscribers = sa.table(
    "subscribers",
    *(sa.column(c) for c in ("id", "uid", "email", "email_normalized", "name", "source")),
    sa.column("attributes", sa.JSON()),
    sa.column("created_at", DT),
    sa.column("confirmed_at", DT),
)
subscriptions = sa.table(
    "subscriptions",
    *(sa.column(c) for c in ("subscriber_id", "list_id", "status")),
    *(sa.column(c, DT) for c in ("created_at", "confirmed_at", "unsubscribed_at")),
)
suppressions = sa.table(
    "suppressions",
    *(sa.column(c) for c in ("id", "email_hash", "email", "reason", "detail")),
    sa.column("created_at", DT),
)
issues = sa.table(
    "issues",
    *(
        sa.column(c)
        for c in ("id", "slug", "list_id", "title", "subject", "status", "html", "text")
    ),
    *(sa.column(c, DT) for c in ("issue_date", "created_at", "finished_at")),
)
deliveries = sa.table(
    "deliveries",
    *(sa.column(c) for c in ("issue_id", "subscriber_id", "status", "attempts", "last_code")),
    sa.column("last_reply"),
    sa.column("lease_owner"),
    *(
        sa.column(c, DT)
        for c in ("next_attempt_at", "lease_expires_at", "created_at", "updated_at", "sent_at")
    ),
)
notices = sa.table(
    "scheduler_notices",
    *(sa.column(c) for c in ("id", "list_slug", "issue_slug", "reason")),
    sa.column("due_at", DT),
    sa.column("created_at", DT),
)

PEOPLE = [
    # id, email, status on the weekly list, confirmed
    (1, "ada@example.org", "confirmed"),
    (2, "grace@example.org", "confirmed"),
    (3, "alan@example.org", "unsubscribed"),
    (4, "katherine@example.org", "unconfirmed"),
    (5, "edsger@example.org", "confirmed"),
]


def uid(n: int) -> str:
    return hashlib.sha256(f"uid-{n}".encode()).hexdigest()[:32]


def insert(conn: sa.Connection, table: sa.TableClause, row: dict[str, Any]) -> int:
    """One row, its id chosen by the database (as 0.1.0's own inserts left the sequences)."""
    return int(conn.execute(sa.insert(table).values(**row).returning(table.c.id)).scalar_one())


def build_previous_release(engine: Engine, *, html: str, text: str) -> dict[str, int]:
    """The schema at 0002, filled as 0.1.0 left it after two sends; the ids it gave."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, PREVIOUS_RELEASE_HEAD)
    with engine.begin() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == PREVIOUS_RELEASE_HEAD
        weekly = insert(
            conn, lists, {"slug": "weekly", "name": "The Test Weekly", "created_at": T0}
        )
        ids: dict[str, int] = {"weekly": weekly}
        for n, address, status in PEOPLE:
            ids[address] = insert(
                conn,
                subscribers,
                {
                    "uid": uid(n),
                    "email": address.capitalize(),
                    "email_normalized": address,
                    "name": f"Reader {n}",
                    "source": "import",
                    "attributes": {"city": "Millbrook", "n": n},
                    "created_at": T0,
                    "confirmed_at": T0 if status != "unconfirmed" else None,
                },
            )
            conn.execute(
                sa.insert(subscriptions).values(
                    subscriber_id=ids[address],
                    list_id=weekly,
                    status=status,
                    created_at=T0,
                    confirmed_at=T0 if status != "unconfirmed" else None,
                    unsubscribed_at=T0 + timedelta(days=1) if status == "unsubscribed" else None,
                )
            )
        insert(
            conn,
            suppressions,
            {
                "email_hash": hashlib.sha256(b"bounced@example.org").hexdigest(),
                "email": None,
                "reason": "bounced",
                "detail": "550 5.1.1 unknown user",
                "created_at": T0,
            },
        )
        issue: dict[str, Any] = {"list_id": weekly, "issue_date": T0, "created_at": T0}
        ids["last-week"] = insert(
            conn,
            issues,
            {
                **issue,
                "slug": "last-week",
                "title": "Last week",
                "subject": "Last week in Millbrook",
                "status": "finished",
                "html": "<p>last week</p>",
                "text": "last week",
                "finished_at": T0,
            },
        )
        ids["flood-barrier-vote"] = insert(
            conn,
            issues,
            {
                **issue,
                "slug": "flood-barrier-vote",
                "title": "The flood barrier vote",
                "subject": "The flood barrier vote",
                "status": "sending",
                "html": html,
                "text": text,
                "finished_at": None,
            },
        )
        sent: dict[str, Any] = {
            "status": "sent",
            "attempts": 1,
            "last_code": 250,
            "last_reply": "250 2.0.0 Ok: queued",
            "next_attempt_at": None,
            "lease_owner": None,
            "lease_expires_at": None,
            "created_at": T0,
            "updated_at": T0,
            "sent_at": T0,
        }
        waiting = {
            **sent,
            "status": "pending",
            "attempts": 0,
            "last_code": None,
            "last_reply": None,
            "sent_at": None,
            # 0.1.0 made every row due at once
            "next_attempt_at": T0,
        }
        rows = [
            ("last-week", "ada@example.org", sent),
            ("last-week", "grace@example.org", sent),
            (
                "last-week",
                "edsger@example.org",
                {
                    **sent,
                    "status": "bounced",
                    "last_code": 550,
                    "sent_at": None,
                    "last_reply": "550 5.1.1 no such user",
                },
            ),
            # the interrupted send: ada has it, grace is pending, edsger was leased by a
            # worker that died (its lease ran out long ago)
            ("flood-barrier-vote", "ada@example.org", sent),
            ("flood-barrier-vote", "grace@example.org", waiting),
            (
                "flood-barrier-vote",
                "edsger@example.org",
                {
                    **waiting,
                    "status": "sending",
                    "lease_owner": "worker-1",
                    "lease_expires_at": T0 + timedelta(minutes=5),
                },
            ),
        ]
        conn.execute(
            sa.insert(deliveries),
            [
                {**row, "issue_id": ids[slug], "subscriber_id": ids[address]}
                for slug, address, row in rows
            ],
        )
        insert(
            conn,
            notices,
            {
                "list_slug": "weekly",
                "issue_slug": "budget-week",
                "reason": "draft",
                "due_at": T0,
                "created_at": T0,
            },
        )
    return ids


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every 0.1.0 column of every 0.1.0 table, in a stable order."""
    tables = {
        "lists": (lists, "id"),
        "subscribers": (subscribers, "id"),
        "subscriptions": (subscriptions, "subscriber_id"),
        "suppressions": (suppressions, "id"),
        "issues": (issues, "id"),
        "deliveries": (deliveries, "issue_id, subscriber_id"),
        "scheduler_notices": (notices, "id"),
    }
    with engine.connect() as conn:
        return {
            name: [tuple(r) for r in conn.execute(sa.select(*table.c).order_by(sa.text(order)))]
            for name, (table, order) in tables.items()
        }


@dataclass(frozen=True)
class Upgraded:
    config: Path
    engine: Engine
    before: dict[str, list[tuple[Any, ...]]]
    ids: dict[str, int]


@pytest.fixture
def upgraded(project: Path, database_url: str, smtpd: SMTPServer) -> Iterator[Upgraded]:
    """A 0.1.0 database on both kinds of store, after ``newsletter init`` of this version."""
    config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    rendered = Renderer(settings).render(load_issue(project / "issues" / ISSUE, settings))
    engine = make_engine(database_url)
    ids = build_previous_release(engine, html=rendered.html, text=rendered.text)
    before = snapshot(engine)
    result = run_cli(config, "init")
    assert result.exit_code == 0, result.output
    assert "Lists: business, weekly" in result.output
    yield Upgraded(config, engine, before, ids)
    engine.dispose()


def test_init_upgrades_to_the_head_and_keeps_every_row(
    upgraded: Upgraded,
) -> None:
    engine, before = upgraded.engine, upgraded.before
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head != PREVIOUS_RELEASE_HEAD
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head
    after = snapshot(engine)
    # business is the list this configuration added; everything else is as 0.1.0 left it
    assert [r[1] for r in after["lists"]] == ["weekly", "business"]
    after["lists"] = after["lists"][:1]
    assert after == before
    assert len(before["deliveries"]) == 6


def test_init_twice_changes_nothing(upgraded: Upgraded) -> None:
    config, engine = upgraded.config, upgraded.engine
    first = snapshot(engine)
    assert run_cli(config, "init").exit_code == 0
    assert snapshot(engine) == first


def test_the_current_code_carries_on_from_the_old_data(
    upgraded: Upgraded, smtpd: SMTPServer, project: Path
) -> None:
    config, engine, ids = upgraded.config, upgraded.engine, upgraded.ids
    result = run_cli(config, "status", "flood-barrier-vote")
    assert result.exit_code == 0, result.output
    assert "flood-barrier-vote to weekly: sending, 3 recipients" in result.output

    # the finished issue stays finished; the interrupted one resumes: grace (pending) and
    # edsger (the dead worker's lease ran out) get it, ada already has it
    result = run_cli(config, "send", str(project / "issues" / ISSUE), "--no-progress")
    assert result.exit_code == 0, result.output
    assert smtpd.handler.by_recipient() == {"grace@example.org": 1, "edsger@example.org": 1}
    with engine.connect() as conn:
        states = dict(
            conn.execute(
                sa.select(deliveries.c.subscriber_id, deliveries.c.status).where(
                    deliveries.c.issue_id == ids["flood-barrier-vote"]
                )
            ).all()
        )
    people = ("ada@example.org", "grace@example.org", "edsger@example.org")
    assert states == {ids[address]: "sent" for address in people}

    result = run_cli(config, "subscribers", "count")
    assert result.exit_code == 0, result.output
    result = run_cli(config, "subscribers", "add", "bounced@example.org")
    assert result.exit_code == 1
    assert "suppress" in result.output.lower()
    result = run_cli(config, "subscribers", "show", "ada@example.org")
    assert result.exit_code == 0, result.output
    assert "Millbrook" in result.output  # the imported attributes


def test_an_unsubscribe_link_to_a_0_1_0_subscriber_still_works(
    upgraded: Upgraded,
) -> None:
    config, engine, ids = upgraded.config, upgraded.engine, upgraded.ids
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    # as the 0.1.0 send signed it into ada's copy of last week's issue
    token = make_token(
        settings.secret_key,
        TokenPurpose.UNSUBSCRIBE,
        uid(1),
        ids["weekly"],
        issued_at=int(T0.timestamp()),
    )
    app = create_app(settings, engine=engine)
    with TestClient(app, base_url="https://news.test.example", follow_redirects=False) as client:
        page = client.post(
            urls.path(urls.UNSUBSCRIBE, token=token), data={"List-Unsubscribe": "One-Click"}
        )
    assert page.status_code == 200, page.text
    with engine.connect() as conn:
        status = conn.execute(
            sa.select(subscriptions.c.status).where(
                subscriptions.c.subscriber_id == ids["ada@example.org"]
            )
        ).scalar_one()
    assert status == "unsubscribed"


# -- the real thing: the 0.1.0 code itself makes the database -------------------------------

# the last commit of 0.1.0 (CHANGELOG.md); its code runs from `git archive`, on this venv
RELEASE_0_1_0 = "cd44cf9a70c54e2eca995bcfc961479866b3d7b0"


@pytest.fixture
def release_0_1_0(tmp_path: Path) -> Path:
    """The 0.1.0 source tree (package, templates, issues), from this repository's history."""
    if not (REPO / ".git").exists():
        pytest.skip("needs the repository's git history (0.1.0 is read from it)")
    target = tmp_path / "release-0.1.0"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", RELEASE_0_1_0, "newsletter", "templates", "issues"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_database_made_by_0_1_0_itself(
    release_0_1_0: Path, project: Path, database_url: str, smtpd: SMTPServer, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    old_config = old / "newsletter.toml"
    old_config.write_text(
        TEST_CONFIG.format(
            database_url=database_url,
            smtp_url=smtpd.url,
            templates=str(release_0_1_0 / "templates"),
        )
        .replace('issues_dir = "issues"', f'issues_dir = "{release_0_1_0 / "issues"}"')
        # a key 0.1.0 did not have yet (it refuses unknown keys, as this release does)
        .replace("unreachable_after = 1\n", ""),
        encoding="utf-8",
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(release_0_1_0),
        "NEWSLETTER_SECRET_KEY": TEST_SECRET,
    }

    def newsletter_0_1_0(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "--config", str(old_config), *args],
            cwd=old,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
        return result.stdout

    where = subprocess.run(
        [sys.executable, "-c", "import newsletter; print(newsletter.__file__)"],
        cwd=old,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(release_0_1_0), where

    newsletter_0_1_0("init")
    for address in ("ada@example.org", "grace@example.org", "alan@example.org"):
        newsletter_0_1_0("subscribers", "add", address, "--name", address.split("@")[0].title())
    out = newsletter_0_1_0("send", str(release_0_1_0 / "issues" / ISSUE), "--no-progress")
    assert "3 sent now" in out, out
    assert len(smtpd.handler.messages) == 3
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == PREVIOUS_RELEASE_HEAD
        before = snapshot(engine)

        # this version: init upgrades, and everything 0.1.0 wrote is still there
        config = write_config(project, database_url=database_url, smtp_url=smtpd.url)
        result = run_cli(config, "init")
        assert result.exit_code == 0, result.output
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == head
        after = snapshot(engine)
        assert [r[1] for r in after["lists"]] == [r[1] for r in before["lists"]]
        assert after == before

        result = run_cli(config, "status", "flood-barrier-vote")
        assert "flood-barrier-vote to weekly: finished, 3 recipients" in result.output
        result = run_cli(config, "send", str(project / "issues" / ISSUE), "--no-progress")
        assert result.exit_code == 0, result.output
        assert "already sent" in result.output
        assert len(smtpd.handler.messages) == 3

        # the one-click unsubscribe link in a copy 0.1.0 sent still works
        message = next(m for m in smtpd.handler.messages if "ada@example.org" in m.rcpt_tos)
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        link = re.search(r"<(https://[^>]+)>", str(parsed["List-Unsubscribe"]))
        assert link is not None, parsed["List-Unsubscribe"]
        settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
        app = create_app(settings, engine=engine)
        with TestClient(app, base_url="https://news.test.example", follow_redirects=False) as c:
            page = c.post(link.group(1), data={"List-Unsubscribe": "One-Click"})
        assert page.status_code == 200, page.text
        with engine.connect() as conn:
            left = (
                conn.execute(
                    sa.select(subscribers.c.email_normalized)
                    .join_from(
                        subscribers,
                        subscriptions,
                        subscribers.c.id == subscriptions.c.subscriber_id,
                    )
                    .where(subscriptions.c.status == "unsubscribed")
                )
                .scalars()
                .all()
            )
        assert left == ["ada@example.org"]
    finally:
        engine.dispose()
