"""The spliced per-recipient bytes parse back into the same message as the stdlib build."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.addresses import address
from newsletter.config import Settings
from newsletter.errors import InvalidAddressError, RenderError
from newsletter.message import (
    MessageTemplate,
    Personalization,
    build_email_message,
    envelope_sender,
    marker,
)
from newsletter.model import UNSUBSCRIBE_URL_PLACEHOLDER, Issue, IssueStatus, RenderedIssue

PH = UNSUBSCRIBE_URL_PLACEHOLDER
WHEN = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)


def rendered_issue(html: str, text: str, subject: str = "Millbrook — the week") -> RenderedIssue:
    issue = Issue(
        path=Path("issues/x.md"),
        slug="2026-11-20",
        date=date(2026, 11, 20),
        title="The week",
        subject=subject,
        preheader="pre",
        authors=("Ann",),
        status=IssueStatus.READY,
        list=None,
    )
    return RenderedIssue(issue, subject, "pre", html, text, "https://news.test.example/a/x")


HTML = (
    "<!doctype html><html><body><p>Grüße aus Millbrook — café, naïve, ünïcode “quotes”.</p>"
    + "<p>"
    + "a long line without breaks " * 40
    + "</p>\n"
    + f'<p style="x=1">Tired of us? <a href="{PH}">Unsubscribe</a> = bye</p>\n'
    + f"<p>again: {PH}</p>   \n<p>trailing spaces   </p></body></html>"
)
TEXT = f"Hello Millbrook 🌧\r\n\r\nUnsubscribe: {PH}\nline with trailing space \n=end="


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def summary(msg: EmailMessage) -> dict[str, object]:
    assert not msg.defects
    parts = []
    for part in msg.iter_parts():
        assert isinstance(part, EmailMessage)
        assert not part.defects
        # text/* is CRLF on the wire; QP decodes to CRLF, base64 to what was encoded
        content = part.get_content().replace("\r\n", "\n")
        parts.append((part.get_content_type(), part.get_content_charset(), content))
    headers = {
        name: str(msg[name])
        for name in (
            "From",
            "To",
            "Reply-To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "MIME-Version",
        )
    }
    return {"type": msg.get_content_type(), "headers": headers, "parts": parts}


def person(to: str, token: str = "AbC-_12", name: str | None = None) -> Personalization:
    return Personalization(
        to=to,
        name=name,
        unsubscribe_url=f"https://news.test.example/unsubscribe/{token}",
        unsubscribe_mailto=f"mailto:unsubscribe@test.example?subject=unsubscribe%20{token}",
        message_id=f"<1.2.{token}@test.example>",
    )


def reference(rendered: RenderedIssue, settings: Settings, p: Personalization) -> EmailMessage:
    msg = build_email_message(
        rendered,
        settings,
        settings.mailing_list(None),
        to=address(p.name, p.to) if p.name else p.to,
        unsubscribe_url=p.unsubscribe_url,
        unsubscribe_mailto=p.unsubscribe_mailto,
        message_id=p.message_id,
        date=WHEN,
    )
    return parse(msg.as_bytes(policy=email.policy.SMTP))


@pytest.mark.parametrize(
    ("to", "name"),
    [
        ("ann@example.org", None),
        ("ann@example.org", "Ann Example"),
        ("ann@example.org", 'Ann "the Editor" O\\Neil, Jr.'),
        ("zoe@example.org", "Zoë Ünïcode"),
        ("zoe@example.org", "Very long name " * 8),
    ],
)
def test_spliced_message_equals_reference(settings: Settings, to: str, name: str | None) -> None:
    rendered = rendered_issue(HTML, TEXT)
    template = MessageTemplate(rendered, settings, settings.mailing_list(None))
    p = person(to, name=name)
    data = template.render(p, date=WHEN)
    spliced = parse(data)
    assert summary(spliced) == summary(reference(rendered, settings, p))
    assert p.unsubscribe_url in spliced.get_body(("html",)).get_content()  # type: ignore[union-attr]
    # wire format: CRLF only, every line within RFC 5322's limit
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert data.isascii()


def test_each_recipient_gets_its_own_link(settings: Settings) -> None:
    template = MessageTemplate(rendered_issue(HTML, TEXT), settings, settings.mailing_list(None))
    one = parse(template.render(person("a@example.org", "tokenA"), date=WHEN))
    two = parse(template.render(person("b@example.org", "tokenB"), date=WHEN))
    assert "tokenA" in str(one["List-Unsubscribe"])
    assert "tokenB" not in one.as_string()
    assert "tokenB" in two.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert str(two["To"]) == "b@example.org"


def test_test_copy_is_marked(settings: Settings) -> None:
    template = MessageTemplate(
        rendered_issue(HTML, TEXT), settings, settings.mailing_list(None), subject_prefix="[TEST] "
    )
    msg = parse(template.render(person("a@example.org"), date=WHEN))
    assert str(msg["Subject"]).startswith("[TEST] Millbrook")


@pytest.mark.parametrize(
    "bad",
    [
        Personalization(
            "a@example.org\r\nBcc: x@evil.example", "https://x/u", "mailto:u@x", "<a@x>"
        ),
        Personalization("a@example.org", "https://x/u\r\nX-Evil: 1", "mailto:u@x", "<a@x>"),
        Personalization("a@example.org", "https://x/u", "mailto:u@x", "<a@x>\nX: y"),
    ],
)
def test_header_injection_is_refused(settings: Settings, bad: Personalization) -> None:
    template = MessageTemplate(rendered_issue(HTML, TEXT), settings, settings.mailing_list(None))
    with pytest.raises(InvalidAddressError):
        template.render(bad)


def test_verp_envelope_sender(settings: Settings) -> None:
    assert envelope_sender(settings, "ann@example.org") == "weekly@test.example"
    verp = dataclasses.replace(
        settings,
        smtp=dataclasses.replace(settings.smtp, return_path="b+{local}={domain}@t.example"),
    )
    assert envelope_sender(verp, "ann@example.org") == "b+ann=example.org@t.example"


chunk = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85\u2028\u2029"
    )
    | st.sampled_from(["\n", " ", "=", "\t"]),
    max_size=120,
)
body_text = st.lists(chunk, max_size=4).map(PH.join)


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(html=body_text, text=body_text)
def test_splice_matches_reference_for_any_body(settings: Settings, html: str, text: str) -> None:
    rendered = rendered_issue(html, text)
    template = MessageTemplate(rendered, settings, settings.mailing_list(None))
    p = person("ann@example.org")
    assert summary(parse(template.render(p, date=WHEN))) == summary(
        reference(rendered, settings, p)
    )


def test_dot_stuffed_render_is_the_wire_form(settings: Settings) -> None:
    from newsletter.transport import wire_form

    html = ".starts with a dot\n" + HTML + "\n." + PH + "\n.."
    rendered = rendered_issue(html, "." + TEXT)
    template = MessageTemplate(rendered, settings, settings.mailing_list(None))
    p = person("a@example.org", token="x")
    p = Personalization(
        p.to, "https://news.test.example/" + "." * 80, p.unsubscribe_mailto, p.message_id
    )
    plain = template.render(p, date=WHEN)
    stuffed = template.render(p, date=WHEN, dot_stuffed=True)
    assert stuffed != plain
    assert stuffed + b".\r\n" == wire_form(plain)


JOIN = marker("join_url")
TWO_HTML = f'<p><a href="{JOIN}">Join the other list</a> or <a href="{PH}">leave</a></p>\n.{JOIN}'
TWO_TEXT = f"Join: {JOIN}\nLeave: {PH}\nJoin again: {JOIN}\n"


def two(to: str, token: str) -> Personalization:
    p = person(to, token)
    return dataclasses.replace(
        p, values={"join_url": f"https://news.test.example/join/{token}?list=business"}
    )


def test_two_placeholders_splice_like_the_reference(settings: Settings) -> None:
    rendered = rendered_issue(TWO_HTML, TWO_TEXT)
    names = ("unsubscribe_url", "join_url")
    template = MessageTemplate(rendered, settings, settings.mailing_list(None), placeholders=names)
    for p in (two("a@example.org", "tokA"), two("b@example.org", "tokB")):
        spliced = parse(template.render(p, date=WHEN))
        ref = build_email_message(
            rendered,
            settings,
            settings.mailing_list(None),
            to=p.to,
            unsubscribe_url=p.unsubscribe_url,
            unsubscribe_mailto=p.unsubscribe_mailto,
            message_id=p.message_id,
            date=WHEN,
            values=p.values,
            placeholders=names,
        )
        assert summary(spliced) == summary(parse(ref.as_bytes(policy=email.policy.SMTP)))
        text = spliced.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert text.count(p.values["join_url"]) == 2
        assert p.unsubscribe_url in text
        assert "%%" not in text
    # dot-stuffed, the second value (after a ".") still gives the wire form
    from newsletter.transport import wire_form

    p = two("a@example.org", "x")
    assert template.render(p, date=WHEN, dot_stuffed=True) + b".\r\n" == wire_form(
        template.render(p, date=WHEN)
    )


def test_parts_share_the_static_pieces_between_recipients(settings: Settings) -> None:
    rendered = rendered_issue(TWO_HTML, TWO_TEXT)
    template = MessageTemplate(
        rendered,
        settings,
        settings.mailing_list(None),
        placeholders=("unsubscribe_url", "join_url"),
    )
    a, b = two("a@example.org", "tokA"), two("b@example.org", "tokB")
    one, other = template.parts(a, date=WHEN), template.parts(b, date=WHEN)
    assert one.join() == template.render(a, date=WHEN)
    assert len(one.body) == len(other.body) == len(template.body_slots)
    assert all(line.endswith(b"\r\n") for line in one.headers)
    assert b"".join(one.headers).count(b"\r\n\r\n") == 0
    slots = [name for name in template.body_slots if name is not None]
    assert slots == ["join_url", "unsubscribe_url", "join_url"] * 2  # text, then HTML
    for piece, again, slot in zip(one.body, other.body, template.body_slots, strict=True):
        if slot is None:
            assert piece is again  # the very same bytes object: per-issue work stays per issue
        else:
            assert piece != again


def test_a_placeholder_without_a_value_fails_that_message(settings: Settings) -> None:
    template = MessageTemplate(
        rendered_issue(TWO_HTML, TWO_TEXT),
        settings,
        settings.mailing_list(None),
        placeholders=("unsubscribe_url", "join_url"),
    )
    with pytest.raises(RenderError, match="%%JOIN_URL%%"):
        template.render(person("a@example.org"))
    # a marker the template was not told about is left alone (and check warns the editor)
    untold = MessageTemplate(
        rendered_issue(TWO_HTML, TWO_TEXT), settings, settings.mailing_list(None)
    )
    assert JOIN.encode() in untold.render(person("a@example.org"))


@pytest.mark.parametrize("bad", ['https://x/"><script>', "https://x/<b>", "https://x/\tjoin"])
def test_a_value_that_would_break_the_markup_is_refused(settings: Settings, bad: str) -> None:
    template = MessageTemplate(
        rendered_issue(TWO_HTML, TWO_TEXT),
        settings,
        settings.mailing_list(None),
        placeholders=("unsubscribe_url", "join_url"),
    )
    p = dataclasses.replace(person("a@example.org"), values={"join_url": bad})
    with pytest.raises(InvalidAddressError, match="JOIN_URL"):
        template.render(p)
