"""Unsubscribe requests by email (the List-Unsubscribe mailto:), store and CLI."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from newsletter.cli import main
from newsletter.config import Settings, load_settings
from newsletter.inbound.mailto import MailRequest, handle_unsubscribe_mail, token_from_message
from newsletter.states import SubscriptionStatus
from newsletter.store.database import make_engine
from newsletter.store.subscribers import add_subscriber, ensure_lists, find_by_email
from newsletter.tokens import TokenPurpose, make_token
from newsletter.urls import unsubscribe_mailto
from tests.conftest import TEST_SECRET, write_config

SECRET = TEST_SECRET.encode()


def request_mail(mailto: str, *, sender: str = "someone@example.org") -> EmailMessage:
    """What a mail client sends for the mailto: link: To and Subject from the URL."""
    parts = urlsplit(mailto)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = unquote(parts.path)
    msg["Subject"] = parse_qs(parts.query)["subject"][0]
    msg.set_content("")
    return msg


def test_mailto_request_leaves_the_list(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
        reader = add_subscriber(
            conn, "reader@example.org", list_ids=[ids["weekly"], ids["business"]]
        )
    token = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, ids["weekly"])
    message = request_mail(unsubscribe_mailto("test.example", token))
    assert message["To"] == "unsubscribe@test.example"
    for expected in (MailRequest.UNSUBSCRIBED, MailRequest.ALREADY):
        with engine.begin() as conn:
            outcome = handle_unsubscribe_mail(conn, SECRET, message)
        assert outcome.result is expected
        assert outcome.list_slug == "weekly"
    with engine.begin() as conn:
        found = find_by_email(conn, "reader@example.org")
    assert found is not None
    assert {s.list_slug: s.status for s in found.subscriptions} == {
        "weekly": SubscriptionStatus.UNSUBSCRIBED,
        "business": SubscriptionStatus.CONFIRMED,
    }

    # a reply with a client's prefix still counts; a forged or missing token does nothing
    reply = request_mail(unsubscribe_mailto("test.example", token))
    reply.replace_header("Subject", "Re: unsubscribe " + token)
    confirm = make_token(SECRET, TokenPurpose.CONFIRM, reader.uid, ids["business"])
    with engine.begin() as conn:
        assert handle_unsubscribe_mail(conn, SECRET, reply).result is MailRequest.ALREADY
        forged = request_mail(unsubscribe_mailto("test.example", token[:-3] + "AAA"))
        assert handle_unsubscribe_mail(conn, SECRET, forged).result is MailRequest.INVALID
        wrong_kind = request_mail(unsubscribe_mailto("test.example", confirm))
        assert handle_unsubscribe_mail(conn, SECRET, wrong_kind).result is MailRequest.INVALID
        chatter = request_mail("mailto:unsubscribe@test.example?subject=hello")
        result = handle_unsubscribe_mail(conn, SECRET, chatter).result
        assert result is MailRequest.NOT_A_REQUEST
    with engine.begin() as conn:
        found = find_by_email(conn, "reader@example.org")
    assert found is not None
    business = found.subscription(ids["business"])
    assert business is not None
    assert business.status is SubscriptionStatus.CONFIRMED


def test_a_request_signed_with_an_earlier_key_is_honoured(
    engine: Engine, settings: Settings
) -> None:
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
        reader = add_subscriber(conn, "reader@example.org", list_ids=[ids["weekly"]])
    token = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, ids["weekly"])
    message = request_mail(unsubscribe_mailto("test.example", token))
    rotated = (b"the-current-key-after-rotation", SECRET)
    with engine.begin() as conn:
        assert handle_unsubscribe_mail(conn, rotated[:1], message).result is MailRequest.INVALID
        assert handle_unsubscribe_mail(conn, rotated, message).result is MailRequest.UNSUBSCRIBED


def test_cli_reads_a_maildir(project: Path, tmp_path: Path) -> None:
    config = write_config(project, database_url=f"sqlite:///{tmp_path / 'm.db'}")
    runner = CliRunner(env={"NEWSLETTER_SECRET_KEY": TEST_SECRET, "NEWSLETTER_CONFIG": None})
    assert runner.invoke(main, ["--config", str(config), "init"]).exit_code == 0
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    engine = make_engine(settings.database_url)
    with engine.begin() as conn:
        ids = ensure_lists(conn, settings)
        reader = add_subscriber(conn, "m@example.org", list_ids=[ids["weekly"]])
    token = make_token(SECRET, TokenPurpose.UNSUBSCRIBE, reader.uid, ids["weekly"])
    maildir = tmp_path / "inbox"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.eml").write_bytes(
        bytes(request_mail(unsubscribe_mailto("test.example", token)))
    )
    (maildir / "cur" / "2.eml").write_bytes(
        bytes(request_mail("mailto:unsubscribe@test.example?subject=hi"))
    )
    result = runner.invoke(
        main, ["--config", str(config), "subscribers", "unsubscribe-mail", str(maildir)]
    )
    assert result.exit_code == 0, result.output
    assert "1.eml: unsubscribed (weekly)" in result.output
    assert "2.eml: no unsubscribe token in the subject" in result.output
    with engine.begin() as conn:
        found = find_by_email(conn, "m@example.org")
    engine.dispose()
    assert found is not None
    assert found.subscriptions[0].status is SubscriptionStatus.UNSUBSCRIBED


@pytest.mark.parametrize("ending", ["-", "_", "A"])
def test_a_token_ending_in_any_base64url_character_is_read_whole(ending: str) -> None:
    token = "AbCd-_0123456789" * 3 + "xyz" + ending
    for subject in (f"unsubscribe {token}", f"Re: Unsubscribe {token}", f"unsubscribe {token} "):
        message = EmailMessage()
        message["Subject"] = subject
        assert token_from_message(message) == token
