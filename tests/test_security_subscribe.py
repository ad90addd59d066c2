"""Abuse of the subscribe form and the confirmation links, through the real app (issue 15).

One victim's mailbox flooded with confirmations through dotted Gmail variants; an old link
confirming a list someone else asked for later; leaving every list one at a time without
being suppressed; and ``/subscribe`` answering "check your inbox" for requests its background
work could never carry out. Real HTTP through the app, a real SMTP server, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, select, update
from starlette.testclient import TestClient

from newsletter.addresses import check_sendable, mailbox_key
from newsletter.config import MailingList, Settings, Subscribe, load_settings
from newsletter.errors import InvalidAddressError
from newsletter.inbound.mailto import MailRequest, handle_unsubscribe_mail
from newsletter.states import SubscriptionStatus, SuppressionReason
from newsletter.store.database import make_engine
from newsletter.store.schema import confirmations, subscriptions
from newsletter.store.subscribers import (
    add_subscriber,
    confirm_subscriber,
    ensure_lists,
    find_by_email,
    request_subscription,
    suppression_reason,
    unsubscribe,
)
from newsletter.tokens import TokenPurpose, make_token
from newsletter.urls import unsubscribe_mailto
from newsletter.web.app import create_app
from tests.conftest import TEST_SECRET, FakeClock
from tests.smtpd import SMTPServer

SECRET = TEST_SECRET.encode()
BASE = "https://news.test.example"
# what a browser sends with a form POST from the site's own pages
BROWSER = {"Origin": BASE}


@contextmanager
def app_client(settings: Settings, engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    """One ``newsletter serve`` process: its own in-memory limits, the shared database."""
    app = create_app(settings, engine=engine, clock=clock)
    with TestClient(app, base_url=BASE, follow_redirects=False) as client:
        yield client


def mails(smtpd: SMTPServer) -> list[EmailMessage]:
    return [m.message for m in smtpd.handler.messages]


def confirm_path(message: EmailMessage) -> str:
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    match = re.search(r"https://news\.test\.example(/confirm/[A-Za-z0-9_-]+)", text.get_content())
    assert match is not None, text.get_content()
    return match.group(1)


def statuses(engine: Engine, email: str) -> dict[str, SubscriptionStatus]:
    with engine.begin() as conn:
        found = find_by_email(conn, email)
    assert found is not None
    return {s.list_slug: s.status for s in found.subscriptions}


def reason(engine: Engine, email: str) -> SuppressionReason | None:
    with engine.begin() as conn:
        return suppression_reason(conn, email)


@pytest.fixture
def three_lists(web_settings: Settings) -> Settings:
    """The test publication with a third list, so a person can leave two and stay on one."""
    culture = MailingList(slug="culture", name="Culture Notes")
    return dataclasses.replace(web_settings, lists={**web_settings.lists, "culture": culture})


@pytest.fixture
def client3(three_lists: Settings, engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    with app_client(three_lists, engine, clock) as client:
        yield client


# --- one victim's mailbox ---------------------------------------------------------------------


def test_mailbox_key_folds_what_the_provider_ignores() -> None:
    # Gmail ignores dots, and googlemail.com is the same mailbox
    for variant in ("v.i.c.t.i.m@gmail.com", "victim+x@gmail.com", "vic.tim+a.b@googlemail.com"):
        assert mailbox_key(variant) == "victim@gmail.com"
    # Proton ignores dots, hyphens and underscores, across its domains
    for variant in ("jo.hn-do_e@proton.me", "johndoe@protonmail.com", "john.doe+x@pm.me"):
        assert mailbox_key(variant) == "johndoe@proton.me"
    # elsewhere a dot is part of the name: two people, two allowances
    assert mailbox_key("a.b@example.org") == "a.b@example.org"
    assert mailbox_key("a.b@outlook.com") != mailbox_key("ab@outlook.com")
    # a local part that is all dots or all tag is kept rather than emptied
    assert mailbox_key("+only@gmail.com") == "+only@gmail.com"


_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)


@hyp_settings(max_examples=200, deadline=None)
@given(
    name=_NAME,
    dots=st.sets(st.integers(min_value=1, max_value=19)),
    tag=st.text(alphabet="abcxyz.-_+0123456789", max_size=8),
    domain=st.sampled_from(["gmail.com", "googlemail.com", "GMail.com"]),
)
def test_every_dotted_or_tagged_gmail_spelling_is_one_mailbox(
    name: str, dots: set[int], tag: str, domain: str
) -> None:
    dotted = "".join(
        ("." if i in dots and 0 < i < len(name) else "") + c for i, c in enumerate(name)
    )
    address = f"{dotted}+{tag}@{domain}" if tag else f"{dotted}@{domain}"
    assert mailbox_key(address) == f"{name}@gmail.com"
    # elsewhere the dots stay: only the tag goes
    assert mailbox_key(f"{dotted}+{tag}@example.org") == f"{dotted}@example.org"


def test_dotted_gmail_variants_get_one_mailbox_allowance_stored_as_typed(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    variants = [
        "victim@gmail.com",
        "v.i.c.t.i.m@gmail.com",
        "vi.ctim@gmail.com",
        "V.Ictim+news@Gmail.com",
        "victim@googlemail.com",
        "v.ictim@googlemail.com",
    ]
    answers = set()
    for address in variants:
        r = client.post("/subscribe", data={"email": address}, headers=BROWSER)
        answers.add((r.status_code, r.text))
    assert len(answers) == 1  # the limit is silent: the same answer every time
    assert len(mails(smtpd)) == 3
    # each mail went to the address as typed, and each address is stored as typed
    assert [m["To"] for m in mails(smtpd)] == variants[:3]
    with engine.begin() as conn:
        stored = find_by_email(conn, "v.i.c.t.i.m@gmail.com")
    assert stored is not None
    assert stored.email == "v.i.c.t.i.m@gmail.com"


def test_the_daily_cap_holds_across_processes_and_restarts(
    web_settings: Settings, engine: Engine, smtpd: SMTPServer, clock: FakeClock
) -> None:
    # each process has its own in-memory hourly limit: two processes, two hours, a restart;
    # the database still lets three emails a day reach the mailbox
    sent_before = 0
    for _process in range(3):
        with app_client(web_settings, engine, clock) as client:
            for variant in ("reader@gmail.com", "re.ader@gmail.com"):
                r = client.post("/subscribe", json={"email": variant})
                assert r.status_code == 202
        clock.now += 3601
        assert len(mails(smtpd)) == min(3, sent_before + 2)
        sent_before = len(mails(smtpd))
    assert len(mails(smtpd)) == 3
    with engine.begin() as conn:
        rows = conn.execute(select(confirmations.c.mailed)).scalars().all()
    assert sorted(rows) == [False, False, False, True, True, True]


def test_the_cap_is_a_rolling_day(
    client: TestClient, smtpd: SMTPServer, engine: Engine, clock: FakeClock
) -> None:
    for _ in range(3):
        client.post("/subscribe", json={"email": "day@gmail.com"})
    clock.now += 3601  # past the hourly limit
    client.post("/subscribe", json={"email": "d.ay@gmail.com"})
    assert len(mails(smtpd)) == 3
    # a day later (the requests' rows moved back 25 hours) the mailbox gets email again
    with engine.begin() as conn:
        conn.execute(
            update(confirmations).values(created_at=datetime.now(UTC) - timedelta(hours=25))
        )
    clock.now += 3601
    client.post("/subscribe", json={"email": "d.ay@gmail.com"})
    assert len(mails(smtpd)) == 4
    # the rows that no longer count are gone
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(confirmations)).scalar_one() == 1


def test_the_cap_is_configurable(
    web_settings: Settings, engine: Engine, smtpd: SMTPServer, clock: FakeClock
) -> None:
    one = dataclasses.replace(web_settings, subscribe=Subscribe(confirmations_per_day=1))
    with app_client(one, engine, clock) as client:
        for address in ("cap@example.org", "cap+2@example.org"):
            assert client.post("/subscribe", json={"email": address}).status_code == 202
    assert len(mails(smtpd)) == 1
    # newsletter.toml and the environment set it
    assert web_settings.source is not None
    path = web_settings.source
    path.write_text(
        path.read_text(encoding="utf-8") + "\n[subscribe]\nconfirmations_per_day = 5\n",
        encoding="utf-8",
    )
    env = {"NEWSLETTER_SECRET_KEY": TEST_SECRET}
    assert load_settings(path, environ=env).subscribe.confirmations_per_day == 5
    env["NEWSLETTER_SUBSCRIBE_CONFIRMATIONS_PER_DAY"] = "2"
    assert load_settings(path, environ=env).subscribe.confirmations_per_day == 2


def test_a_request_over_the_cap_waits_for_the_next_days_link(
    engine: Engine, lists: dict[str, int]
) -> None:
    day = datetime(2026, 12, 1, 9, tzinfo=UTC)
    with engine.begin() as conn:
        first = request_subscription(
            conn, "w@gmail.com", list_ids=[lists["weekly"]], confirmations_per_day=1, now=day
        )
        over = request_subscription(
            conn, "w@gmail.com", list_ids=[lists["business"]], confirmations_per_day=1, now=day
        )
        assert first.confirmation is not None
        assert over.confirmation is None  # no email: the mailbox had its one for the day
        assert over.pending == (lists["business"],)
        # the first link never covers what was asked for after it
        assert first.subscriber is not None
        confirm_subscriber(conn, first.subscriber.uid, link=first.confirmation)
        assert statuses_of(conn, "w@gmail.com") == {
            "weekly": SubscriptionStatus.CONFIRMED,
            "business": SubscriptionStatus.UNCONFIRMED,
        }
        # the next day's request mails a link that covers the waiting list
        later = request_subscription(
            conn,
            "w@gmail.com",
            list_ids=[lists["business"]],
            confirmations_per_day=1,
            now=day + timedelta(days=1, seconds=1),
        )
        assert later.confirmation is not None
        assert later.confirms == (lists["business"],)


def statuses_of(conn: Connection, email: str) -> dict[str, SubscriptionStatus]:
    found = find_by_email(conn, email)
    assert found is not None
    return {s.list_slug: s.status for s in found.subscriptions}


def test_concurrent_requests_cannot_overrun_the_cap(
    database_url: str, engine: Engine, lists: dict[str, int]
) -> None:
    # eight processes' worth of requests for one mailbox at once: three emails, no more
    variants = ["fl.ood@gmail.com", "f.lood@gmail.com", "flo.od@gmail.com", "floo.d@gmail.com"]
    variants += [v.replace("@", "+t@") for v in variants]
    engines = [make_engine(database_url) for _ in variants]
    start = threading.Barrier(len(variants))
    results: list[int | None] = []
    errors: list[BaseException] = []

    def run(address: str, eng: Engine) -> None:
        try:
            start.wait()
            with eng.begin() as conn:
                outcome = request_subscription(
                    conn, address, list_ids=[lists["weekly"]], confirmations_per_day=3
                )
            results.append(outcome.confirmation)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=pair) for pair in zip(variants, engines, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for eng in engines:
        eng.dispose()
    assert errors == []
    assert len(results) == len(variants)
    assert sum(1 for r in results if r is not None) == 3


# --- what a confirmation link confirms ---------------------------------------------------------


def test_the_issues_scenario_an_old_link_confirms_nothing_asked_for_later(
    client: TestClient, smtpd: SMTPServer, engine: Engine, web_settings: Settings
) -> None:
    # v is on business; asks for weekly (link A); leaves both; someone asks for business later
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        v = add_subscriber(conn, "v@example.org", list_ids=[ids["business"]])
    client.post("/subscribe", data={"email": "v@example.org", "lists": "weekly"}, headers=BROWSER)
    (first,) = mails(smtpd)
    link_a = confirm_path(first)
    leave = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, v.uid, ids["business"])
    r = client.post(f"/unsubscribe/{leave}", data={"action": "preferences"}, headers=BROWSER)
    assert r.status_code == 200
    assert statuses(engine, "v@example.org") == {
        "weekly": SubscriptionStatus.UNSUBSCRIBED,
        "business": SubscriptionStatus.UNSUBSCRIBED,
    }
    # leaving both is leaving everything: the later request does nothing and mails nothing
    r = client.post("/subscribe", json={"email": "v@example.org", "lists": ["business"]})
    assert r.status_code == 202
    assert len(mails(smtpd)) == 1
    assert client.post(link_a, headers=BROWSER).status_code == 400
    assert statuses(engine, "v@example.org") == {
        "weekly": SubscriptionStatus.UNSUBSCRIBED,
        "business": SubscriptionStatus.UNSUBSCRIBED,
    }


def test_an_old_link_does_not_confirm_a_list_left_earlier_and_requested_later(
    client3: TestClient, smtpd: SMTPServer, engine: Engine, three_lists: Settings
) -> None:
    # still on culture, so leaving weekly and business is leaving two lists, not everything
    with engine.begin() as conn:
        ids = ensure_lists(conn, three_lists)
        v = add_subscriber(conn, "v@example.org", list_ids=list(ids.values()))
    for slug in ("weekly", "business"):
        token = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, v.uid, ids[slug])
        r = client3.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200
    assert reason(engine, "v@example.org") is None
    # v asks for weekly again (link A); later a stranger asks for business in v's name (link B)
    client3.post("/subscribe", data={"email": "v@example.org", "lists": "weekly"}, headers=BROWSER)
    client3.post("/subscribe", json={"email": "v@example.org", "lists": ["business"]})
    first, second = mails(smtpd)
    link_a, link_b = confirm_path(first), confirm_path(second)
    # opening link A changes nothing; pressing it confirms weekly and only weekly
    assert client3.get(link_a).status_code == 200
    assert statuses(engine, "v@example.org")["weekly"] is SubscriptionStatus.UNCONFIRMED
    done = client3.post(link_a, headers=BROWSER)
    assert done.status_code == 200
    assert statuses(engine, "v@example.org") == {
        "weekly": SubscriptionStatus.CONFIRMED,
        "business": SubscriptionStatus.UNCONFIRMED,
        "culture": SubscriptionStatus.CONFIRMED,
    }
    # the page lists what they receive, not the list still waiting for its own link
    assert "Business Brief" not in done.text
    assert "Culture Notes" in done.text
    # link B names what it confirms (business, and weekly that was waiting when it was mailed)
    text = second.get_body(preferencelist=("plain",))
    assert text is not None
    assert "Business Brief" in text.get_content()
    assert client3.post(link_b, headers=BROWSER).status_code == 200
    assert statuses(engine, "v@example.org")["business"] is SubscriptionStatus.CONFIRMED


def test_a_list_requested_in_the_same_second_is_not_confirmed_by_the_earlier_link(
    client: TestClient, smtpd: SMTPServer, engine: Engine
) -> None:
    # issued-at has whole seconds: only the request's number tells these two apart
    client.post("/subscribe", data={"email": "s@example.org", "lists": "weekly"}, headers=BROWSER)
    client.post("/subscribe", json={"email": "s@example.org", "lists": ["business"]})
    first, _second = mails(smtpd)
    assert client.post(confirm_path(first), headers=BROWSER).status_code == 200
    assert statuses(engine, "s@example.org") == {
        "weekly": SubscriptionStatus.CONFIRMED,
        "business": SubscriptionStatus.UNCONFIRMED,
    }


def test_a_link_left_and_asked_for_again_needs_the_new_link(
    client3: TestClient, smtpd: SMTPServer, engine: Engine, three_lists: Settings
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, three_lists)
        v = add_subscriber(conn, "v@example.org", list_ids=[ids["culture"]])
    client3.post("/subscribe", data={"email": "v@example.org", "lists": "weekly"}, headers=BROWSER)
    old = confirm_path(mails(smtpd)[0])
    # v leaves the waiting list on the preferences page (keeping culture), a stranger asks again
    token = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, v.uid, ids["culture"])
    r = client3.post(
        f"/unsubscribe/{token}", data={"action": "preferences", "keep": "culture"}, headers=BROWSER
    )
    assert r.status_code == 200
    client3.post("/subscribe", json={"email": "v@example.org", "lists": ["weekly"]})
    assert len(mails(smtpd)) == 2
    assert client3.post(old, headers=BROWSER).status_code == 200
    assert statuses(engine, "v@example.org")["weekly"] is SubscriptionStatus.UNCONFIRMED
    assert client3.post(confirm_path(mails(smtpd)[1]), headers=BROWSER).status_code == 200
    assert statuses(engine, "v@example.org")["weekly"] is SubscriptionStatus.CONFIRMED


def test_a_link_mailed_before_requests_were_numbered(
    client: TestClient, engine: Engine, web_settings: Settings
) -> None:
    # such a link carries 0: it confirms what was asked for before it, nothing numbered since
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        v = add_subscriber(
            conn, "old@example.org", list_ids=[ids["weekly"]], status=SubscriptionStatus.UNCONFIRMED
        )
    legacy = make_token(SECRET, TokenPurpose.CONFIRM, v.uid, 0)
    client.post("/subscribe", json={"email": "old@example.org", "lists": ["business"]})
    assert client.post(f"/confirm/{legacy}", headers=BROWSER).status_code == 200
    assert statuses(engine, "old@example.org") == {
        "weekly": SubscriptionStatus.CONFIRMED,
        "business": SubscriptionStatus.UNCONFIRMED,
    }


def test_a_join_link_confirms_only_its_own_list(
    client3: TestClient, engine: Engine, three_lists: Settings
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, three_lists)
        reader = add_subscriber(conn, "r@example.org", list_ids=[ids["weekly"]])
        for slug in ("business", "culture"):  # asked for in the reader's name, never confirmed
            request_subscription(conn, "r@example.org", list_ids=[ids[slug]])
    join = make_token(SECRET, TokenPurpose.JOIN, reader.uid, ids["business"])
    assert client3.get(f"/join/{join}").status_code == 200
    assert statuses(engine, "r@example.org")["business"] is SubscriptionStatus.UNCONFIRMED
    assert client3.post(f"/join/{join}", headers=BROWSER).status_code == 200
    assert statuses(engine, "r@example.org") == {
        "weekly": SubscriptionStatus.CONFIRMED,
        "business": SubscriptionStatus.CONFIRMED,
        "culture": SubscriptionStatus.UNCONFIRMED,
    }


# --- leaving every list -------------------------------------------------------------------------


def _on_both(engine: Engine, settings: Settings, email: str = "r@example.org") -> dict[str, str]:
    """Tokens to leave each list, for a reader on weekly and business."""
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
        reader = add_subscriber(conn, email, list_ids=[ids["weekly"], ids["business"]])
    return {
        slug: make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, ids[slug])
        for slug in ("weekly", "business")
    }


def _assert_left_everything(engine: Engine, client: TestClient, smtpd: SMTPServer) -> None:
    assert reason(engine, "r@example.org") is SuppressionReason.UNSUBSCRIBED
    assert set(statuses(engine, "r@example.org").values()) == {SubscriptionStatus.UNSUBSCRIBED}
    # nothing brings them back: not the form, not the operator
    client.post("/subscribe", json={"email": "r@example.org", "lists": ["weekly"]})
    assert mails(smtpd) == []
    assert set(statuses(engine, "r@example.org").values()) == {SubscriptionStatus.UNSUBSCRIBED}


def test_leaving_every_list_by_one_click_suppresses(
    client: TestClient, smtpd: SMTPServer, engine: Engine, web_settings: Settings
) -> None:
    tokens = _on_both(engine, web_settings)
    one_click = {"List-Unsubscribe": "One-Click"}
    assert client.post(f"/unsubscribe/{tokens['weekly']}", data=one_click).status_code == 200
    assert reason(engine, "r@example.org") is None  # one list left, one to go
    assert client.post(f"/unsubscribe/{tokens['business']}", data=one_click).status_code == 200
    _assert_left_everything(engine, client, smtpd)


def test_leaving_every_list_on_the_unsubscribe_page_suppresses(
    client: TestClient, smtpd: SMTPServer, engine: Engine, web_settings: Settings
) -> None:
    # the page's "leave this list" button, pressed in the emails of each list
    tokens = _on_both(engine, web_settings)
    for slug in ("weekly", "business"):
        page = client.get(f"/unsubscribe/{tokens[slug]}")
        assert page.status_code == 200
        assert 'name="List-Unsubscribe" value="One-Click"' in page.text
        r = client.post(
            f"/unsubscribe/{tokens[slug]}", data={"List-Unsubscribe": "One-Click"}, headers=BROWSER
        )
        assert r.status_code == 200
    _assert_left_everything(engine, client, smtpd)
    # the page says there is nothing left to leave
    assert "unsubscribe" in client.get(f"/unsubscribe/{tokens['weekly']}").text.lower()


def test_leaving_every_list_on_the_preferences_page_suppresses(
    client: TestClient, smtpd: SMTPServer, engine: Engine, web_settings: Settings
) -> None:
    tokens = _on_both(engine, web_settings)
    url = f"/unsubscribe/{tokens['weekly']}"
    r = client.post(url, data={"action": "preferences", "keep": "business"}, headers=BROWSER)
    assert r.status_code == 200
    assert reason(engine, "r@example.org") is None
    # then unticks the last one
    r = client.post(url, data={"action": "preferences"}, headers=BROWSER)
    assert r.status_code == 200
    _assert_left_everything(engine, client, smtpd)


def test_leaving_every_list_by_mail_suppresses(
    client: TestClient, smtpd: SMTPServer, engine: Engine, web_settings: Settings
) -> None:
    tokens = _on_both(engine, web_settings)
    for slug in ("weekly", "business"):
        message = EmailMessage()
        message["From"] = "r@example.org"
        message["To"] = "unsubscribe@test.example"
        mailto = unsubscribe_mailto("test.example", tokens[slug])
        message["Subject"] = "unsubscribe " + tokens[slug]
        assert tokens[slug] in mailto
        message.set_content("")
        with engine.begin() as conn:
            outcome = handle_unsubscribe_mail(conn, SECRET, message)
        assert outcome.result is MailRequest.UNSUBSCRIBED
    _assert_left_everything(engine, client, smtpd)


def test_leaving_both_lists_at_the_same_moment_still_suppresses(
    database_url: str, engine: Engine, lists: dict[str, int]
) -> None:
    # two one-click requests at once (a mail client acting on two emails): each sees the
    # other's list as left, not as still joined
    people = []
    with engine.begin() as conn:
        for i in range(6):
            person = add_subscriber(conn, f"two{i}@example.org", list_ids=list(lists.values()))
            people.append(person)
    engines = [make_engine(database_url) for _ in range(2)]
    errors: list[BaseException] = []
    try:
        for person in people:
            start = threading.Barrier(2)

            def leave(
                list_id: int,
                eng: Engine,
                person_id: int = person.id,
                start: threading.Barrier = start,
            ) -> None:
                try:
                    start.wait()
                    with eng.begin() as conn:
                        unsubscribe(conn, person_id, list_id)
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [
                threading.Thread(target=leave, args=(lid, eng))
                for lid, eng in zip(lists.values(), engines, strict=True)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
    finally:
        for eng in engines:
            eng.dispose()
    assert errors == []
    for person in people:
        assert reason(engine, person.email) is SuppressionReason.UNSUBSCRIBED


def test_a_list_waiting_for_confirmation_is_still_a_list(
    client: TestClient, engine: Engine, web_settings: Settings
) -> None:
    # the preferences page shows it, so leaving the confirmed one is not leaving everything
    tokens = _on_both(engine, web_settings)
    with engine.begin() as conn:
        conn.execute(
            update(subscriptions)
            .where(subscriptions.c.list_id == ensure_lists(conn, web_settings)["business"])
            .values(status=SubscriptionStatus.UNCONFIRMED.value)
        )
    r = client.post(f"/unsubscribe/{tokens['weekly']}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert reason(engine, "r@example.org") is None
    assert "Business Brief" in r.text


# --- /subscribe validates before it answers ----------------------------------------------------


def test_a_lone_surrogate_name_is_refused_before_the_answer(
    client: TestClient, smtpd: SMTPServer, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # JSON can carry one (\ud800); no database can store it
    body = b'{"email": "sur@example.org", "name": "Ann \\ud800"}'
    r = client.post("/subscribe", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "cannot be stored" in r.json()["message"]
    assert mails(smtpd) == []
    with engine.begin() as conn:
        assert find_by_email(conn, "sur@example.org") is None
    # in the address it is an invalid address, answered on the form without a 500
    body = b'{"email": "s\\ud800r@example.org"}'
    r = client.post("/subscribe", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "not valid" in r.json()["message"]
    assert [rec for rec in caplog.records if rec.levelno >= logging.WARNING] == []


def test_an_address_the_relay_cannot_take_is_refused_alike_known_or_not(
    client: TestClient,
    smtpd: SMTPServer,
    engine: Engine,
    web_settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    # one such address is in the store already (imported): the answer must not tell
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        add_subscriber(conn, "jürgen@example.org", list_ids=[ids["weekly"]])
    answers = []
    for address in ("jürgen@example.org", "jörg@example.org"):
        r = client.post("/subscribe", data={"email": address}, headers=BROWSER)
        assert r.status_code == 400
        assert "cannot be delivered" in r.text
        assert f'value="{address}"' in r.text  # the form keeps what they typed
        answers.append(r.text.replace(address, "ADDRESS"))
        j = client.post("/subscribe", json={"email": address})
        assert j.status_code == 400
        answers.append(j.text.replace(address, "ADDRESS"))
    assert answers[0] == answers[2]
    assert answers[1] == answers[3]
    assert mails(smtpd) == []
    with engine.begin() as conn:
        assert find_by_email(conn, "jörg@example.org") is None
    # nothing failed behind the answer
    assert [rec for rec in caplog.records if rec.levelno >= logging.WARNING] == []
    # an internationalised domain is fine: it goes out in IDNA
    assert check_sendable("leser@bücher.de") == "leser@xn--bcher-kva.de"
    with pytest.raises(InvalidAddressError):
        check_sendable("jürgen@example.org")


def test_valid_known_and_unknown_addresses_still_get_the_same_answer(
    client: TestClient, engine: Engine, web_settings: Settings
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, web_settings)
        add_subscriber(conn, "known@gmail.com", list_ids=[ids["weekly"]])
    for kind in ("form", "json"):
        answers = set()
        for address in ("known@gmail.com", "kn.own@gmail.com", "unknown@gmail.com"):
            if kind == "form":
                r = client.post("/subscribe", data={"email": address}, headers=BROWSER)
            else:
                r = client.post("/subscribe", json={"email": address})
            answers.add((r.status_code, r.text))
        assert len(answers) == 1
