"""newsletter.dkim: every signature verifies with dkimpy and with OpenDKIM, and breaks when it must.

The issue messages come from a real :class:`MessageTemplate`, split into the pieces the signer
takes at the parts that differ per recipient (the To, Date, Message-ID and List-Unsubscribe lines
and the unsubscribe URL in both bodies); phase 2 gets the same pieces from the template itself.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.message import EmailMessage

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.config import Settings, load_settings
from newsletter.dkim import (
    OVERSIGNED,
    BodyPiece,
    HeaderPiece,
    Signer,
    SigningKey,
    SigningTemplate,
    Slot,
    canonical_body_lines,
    split_message,
)
from newsletter.message import MessageTemplate, Personalization
from tests.conftest import TEST_SECRET, write_config
from tests.opendkim import OpenDkim, opendkim
from tests.test_message_splice import HTML, TEXT, WHEN, rendered_issue

__all__ = ["opendkim"]

DOMAIN = "test.example"
# the per-recipient header lines of an issue, and the slot each goes in
HEADER_SLOTS = {"to": "to", "date": "date", "message-id": "message_id", "list-unsubscribe": "lu"}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def signer(rsa_key: rsa.RSAPrivateKey, ed_key: ed25519.Ed25519PrivateKey) -> Signer:
    return Signer(DOMAIN, [SigningKey("ed", ed_key), SigningKey("news", rsa_key)])


@pytest.fixture(scope="module")
def judge(opendkim: OpenDkim, signer: Signer) -> OpenDkim:
    # the records the signer says to publish are the ones both verifiers get: that tests them too
    opendkim.add_records({r.name: r.value for r in signer.dns_records()})
    return opendkim


@pytest.fixture(scope="module")
def issue_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("project")
    path = write_config(root, database_url=f"sqlite:///{root / 'newsletter.db'}")
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})


def dnsfunc(signer: Signer) -> object:
    records = {f"{r.name}.".encode(): r.value.encode() for r in signer.dns_records()}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def dkimpy_verdicts(message: bytes, signer: Signer) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature of ``message``, top first."""
    count = len(re.findall(rb"^DKIM-Signature:", message, re.MULTILINE | re.IGNORECASE))
    verdicts = []
    for index in range(count):
        try:
            verdicts.append(bool(dkim.DKIM(message).verify(idx=index, dnsfunc=dnsfunc(signer))))
        except dkim.DKIMException:
            verdicts.append(False)
    return verdicts


def only_signature(message: bytes, index: int) -> bytes:
    """``message`` keeping only its ``index``-th DKIM-Signature (OpenDKIM passes a message when
    any one holds, so each is judged alone; the header is not signed, so removing one is
    harmless to the others)."""
    headers, body = split_message(message)
    signatures = [i for i, (name, _) in enumerate(headers) if name.lower() == "dkim-signature"]
    drop = set(signatures) - {signatures[index]}
    kept = b"".join(line for i, (_, line) in enumerate(headers) if i not in drop)
    return kept + b"\r\n" + body


def opendkim_verdicts(message: bytes, judge: OpenDkim) -> list[bool]:
    count = len(re.findall(rb"^DKIM-Signature:", message, re.MULTILINE | re.IGNORECASE))
    return [judge.verify(only_signature(message, i)).ok for i in range(count)]


def url_qp(url: str) -> bytes:
    """What MessageTemplate splices into the QP body for a URL without "=" or non-ASCII."""
    return b"=\r\n".join(url[i : i + 75].encode("ascii") for i in range(0, len(url), 75))


def pieces_of(message: bytes, url: str) -> tuple[list[HeaderPiece], list[BodyPiece]]:
    """One recipient's rendered message as signer pieces, per-recipient parts as slots."""
    headers, body = split_message(message)
    header_pieces: list[HeaderPiece] = [
        (name, Slot(HEADER_SLOTS[name.lower()]) if name.lower() in HEADER_SLOTS else line)
        for name, line in headers
    ]
    segments = body.split(url_qp(url))
    assert len(segments) == 4, "the URL is in the text once and in the HTML twice"
    body_pieces: list[BodyPiece] = [segments[0]]
    for segment in segments[1:]:
        body_pieces += [Slot("url"), segment]
    return header_pieces, body_pieces


def values_of(message: bytes, url: str) -> dict[str, bytes]:
    headers, _ = split_message(message)
    values = {HEADER_SLOTS[n.lower()]: line for n, line in headers if n.lower() in HEADER_SLOTS}
    values["url"] = url_qp(url)
    return values


def person(n: int, *, name: str | None = None, token: str | None = None) -> Personalization:
    token = token or f"tok{n}-" + hashlib.sha256(str(n).encode()).hexdigest()[: 8 + n % 50]
    return Personalization(
        to=f"reader{n}@example.org",
        name=name,
        unsubscribe_url=f"https://news.test.example/unsubscribe/{token}",
        unsubscribe_mailto=f"mailto:unsubscribe@test.example?subject=unsubscribe%20{token}",
        message_id=f"<{n}.{token}@test.example>",
    )


def issue_template(settings_: Settings, subject: str = "Millbrook — the week") -> MessageTemplate:
    return MessageTemplate(
        rendered_issue(HTML, TEXT, subject), settings_, settings_.mailing_list(None)
    )


def signing_template(
    signer: Signer, template: MessageTemplate, first: Personalization
) -> SigningTemplate:
    message = template.render(first, date=WHEN)
    headers, body = pieces_of(message, first.unsubscribe_url)
    return signer.template(headers, body)


def signed_issue(
    signer: Signer, template: MessageTemplate, recipient: Personalization
) -> tuple[SigningTemplate, bytes]:
    signing = signing_template(signer, template, person(0))
    message = template.render(recipient, date=WHEN)
    values = values_of(message, recipient.unsubscribe_url)
    assert signing.message(values) == message
    return signing, signing.signature(values) + message


# --- the issue path -------------------------------------------------------------------------


def test_issue_signatures_verify_with_dkimpy_and_opendkim(
    signer: Signer, judge: OpenDkim, issue_settings: Settings
) -> None:
    template = issue_template(issue_settings)
    signing = signing_template(signer, template, person(0))
    for n in (1, 2, 3):
        recipient = person(n, name="Zoë Ångström-Łukasiewicz" if n == 2 else None)
        message = template.render(recipient, date=WHEN)
        values = values_of(message, recipient.unsubscribe_url)
        assert signing.message(values) == message
        signed = signing.signature(values) + message
        assert dkimpy_verdicts(signed, signer) == [True, True]
        assert opendkim_verdicts(signed, judge) == [True, True]
    # a long non-ASCII name: RFC 2047 encoded-words folded over several lines
    recipient = person(4, name="Łukasz Żółć-Brzęczyszczykiewicz, Redakcja «Wiadomości» " * 3)
    message = template.render(recipient, date=WHEN)
    to_line = dict(split_message(message)[0])["To"]
    assert b"=?utf-8?" in to_line
    assert to_line.count(b"\r\n ") >= 2
    signed = signing.signature(values_of(message, recipient.unsubscribe_url)) + message
    assert dkimpy_verdicts(signed, signer) == [True, True]
    assert opendkim_verdicts(signed, judge) == [True, True]
    # OpenDKIM looked the key up in the namespace's DNS, under the record dns_records names
    verdict = judge.verify(only_signature(signed, 0))
    assert verdict.queries == ("news._domainkey.test.example.",)


def test_fast_path_signs_exactly_as_the_plain_path(
    signer: Signer, issue_settings: Settings
) -> None:
    template = issue_template(issue_settings)
    signing = signing_template(signer, template, person(0))
    for n in range(1, 6):
        recipient = person(n, name="Ann O'Neil" if n % 2 else None)
        message = template.render(recipient, date=WHEN)
        values = values_of(message, recipient.unsubscribe_url)
        # RSA PKCS#1 v1.5 and Ed25519 are deterministic: same input, same bytes
        assert signing.signature(values, timestamp=1_800_000_000) == signer.signature(
            message, timestamp=1_800_000_000
        )


def test_signatures_differ_per_recipient_and_a_copy_does_not_verify_for_another(
    signer: Signer, issue_settings: Settings
) -> None:
    template = issue_template(issue_settings)
    _, ann = signed_issue(signer, template, person(1))
    _, bob = signed_issue(signer, template, person(2))
    ann_sig, _ = ann.split(b"From:", 1)
    bob_sig, bob_message = bob.split(b"From:", 1)
    assert ann_sig != bob_sig
    assert dkimpy_verdicts(ann_sig + b"From:" + bob_message, signer) == [False, False]


def test_signature_header_names_oversigned_headers_once_more_than_they_occur(
    signer: Signer, issue_settings: Settings
) -> None:
    _, signed = signed_issue(signer, issue_template(issue_settings), person(1))
    header = split_message(signed)[0][0][1].decode()
    assert header.startswith("DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    tags = dict(
        tag.strip().split("=", 1)
        for tag in re.sub(r"\s+", "", header.split(":", 1)[1]).split(";")
        if tag.strip()
    )
    assert tags["d"] == DOMAIN
    assert tags["s"] == "news"
    names = tags["h"].split(":")
    message_names = [name.lower() for name, _ in split_message(signed)[0][1:]]
    for name in OVERSIGNED:
        assert names.count(name) == message_names.count(name) + 1, name
    # the issue has every one of them, List-Unsubscribe(-Post) included (RFC 8058 section 4)
    assert all(name in message_names for name in OVERSIGNED)
    assert names.count("mime-version") == 1
    assert names.count("content-type") == 1
    assert "dkim-signature" not in names
    assert all(len(line) <= 78 for line in header.split("\r\n"))


SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Reply-To",
    b"Message-ID",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
)


@pytest.mark.parametrize("name", SIGNED_HEADERS, ids=lambda n: n.decode())
def test_tampering_with_a_signed_header_breaks_both_signatures(
    name: bytes, signer: Signer, judge: OpenDkim, issue_settings: Settings
) -> None:
    _, signed = signed_issue(signer, issue_template(issue_settings), person(1))
    start = signed.index(b"\r\n" + name + b": ") + 2 + len(name) + 2
    # one character of the value changed (a letter or digit, so the header stays well-formed)
    at = start + next(i for i, c in enumerate(signed[start:]) if chr(c).isalnum())
    original = chr(signed[at])
    swapped = ("x" if original != "x" else "y").encode()
    tampered = signed[:at] + swapped + signed[at + 1 :]
    assert dkimpy_verdicts(tampered, signer) == [False, False]
    assert opendkim_verdicts(tampered, judge) == [False, False]


def test_tampering_with_one_body_byte_breaks_both_signatures(
    signer: Signer, judge: OpenDkim, issue_settings: Settings
) -> None:
    _, signed = signed_issue(signer, issue_template(issue_settings), person(1))
    body_at = signed.index(b"\r\n\r\n") + 4
    for at in (body_at + 5, len(signed) // 2, len(signed) - 12):
        while not chr(signed[at]).isalnum():
            at += 1
        tampered = signed[:at] + (b"X" if signed[at] != ord("X") else b"Y") + signed[at + 1 :]
        assert dkimpy_verdicts(tampered, signer) == [False, False]
        assert opendkim_verdicts(tampered, judge) == [False, False]


@pytest.mark.parametrize(
    "added",
    [
        b"From: Someone Else <ceo@test.example>\r\n",
        b"Subject: Urgent: confirm your password\r\n",
        b"List-Unsubscribe: <https://evil.example/u>\r\n",
        b"To: victim@example.org\r\n",
    ],
    ids=["From", "Subject", "List-Unsubscribe", "To"],
)
def test_a_second_copy_of_an_oversigned_header_breaks_both_signatures(
    added: bytes, signer: Signer, judge: OpenDkim, issue_settings: Settings
) -> None:
    _, signed = signed_issue(signer, issue_template(issue_settings), person(1))
    headers, _ = split_message(signed)
    # after the signatures, where a client showing the first copy would show the forger's
    cut = sum(len(line) for name, line in headers if name.lower() == "dkim-signature")
    forged = signed[:cut] + added + signed[cut:]
    assert dkimpy_verdicts(forged, signer) == [False, False]
    assert opendkim_verdicts(forged, judge) == [False, False]
    # at the bottom too: verifiers pick instances from the bottom up
    body = signed.split(b"\r\n\r\n", 1)[1]
    forged = signed.split(b"\r\n\r\n", 1)[0] + b"\r\n" + added + b"\r\n" + body
    assert dkimpy_verdicts(forged, signer) == [False, False]
    assert opendkim_verdicts(forged, judge) == [False, False]


def test_what_relaxed_canonicalisation_allows_still_verifies(
    signer: Signer, judge: OpenDkim, issue_settings: Settings
) -> None:
    _, signed = signed_issue(signer, issue_template(issue_settings), person(1))
    # a relay's trace header, a refolded Subject, spaces doubled, trailing spaces and empty
    # lines added: all within what relaxed/relaxed ignores
    changed = b"Received: from a by b; Fri, 20 Nov 2026 11:00:00 +0000\r\n" + signed
    changed = changed.replace(b"\r\nSubject: ", b"\r\nSubject:   \r\n\t ", 1)
    changed = changed.replace(b"MIME-Version: 1.0", b"mime-version:\t1.0  ", 1)
    changed = changed.replace(b"Hello Millbrook", b"Hello   Millbrook", 1)
    changed = changed.replace(b"--\r\n", b"--  \r\n\r\n\r\n")
    assert changed != signed
    assert dkimpy_verdicts(changed, signer) == [True, True]
    assert opendkim_verdicts(changed, judge) == [True, True]


def test_signing_runs_in_a_thread_pool_with_the_same_result(
    signer: Signer, issue_settings: Settings
) -> None:
    template = issue_template(issue_settings)
    signing = signing_template(signer, template, person(0))
    batch = [
        values_of(template.render(p, date=WHEN), p.unsubscribe_url)
        for p in (person(n) for n in range(1, 9))
    ]
    serial = signing.signatures(batch, timestamp=1_800_000_000)
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = signing.signatures(batch, executor=pool, timestamp=1_800_000_000)
    assert threaded == serial
    assert len(set(serial)) == len(batch)


def test_a_dot_stuffed_render_carries_the_same_signature(
    signer: Signer, issue_settings: Settings
) -> None:
    # phase 2 sends the DATA-ready bytes; the signature is over the unstuffed message
    template = MessageTemplate(
        rendered_issue(HTML, ".leading dot\n" + TEXT),
        issue_settings,
        issue_settings.mailing_list(None),
    )
    recipient = person(3)
    signing = signing_template(signer, template, person(0))
    plain = template.render(recipient, date=WHEN)
    signature = signing.signature(values_of(plain, recipient.unsubscribe_url))
    stuffed = template.render(recipient, date=WHEN, dot_stuffed=True)
    assert b"\r\n..leading dot" in stuffed
    unstuffed = (signature + stuffed).replace(b"\r\n..", b"\r\n.")
    assert dkimpy_verdicts(unstuffed, signer) == [True, True]


def test_a_header_slot_must_hold_one_line_of_its_header(
    signer: Signer, issue_settings: Settings
) -> None:
    template = issue_template(issue_settings)
    signing = signing_template(signer, template, person(0))
    message = template.render(person(1), date=WHEN)
    values = values_of(message, person(1).unsubscribe_url)
    for bad in (
        b"To: a@example.org\r\nBcc: b@example.org\r\n",
        b"To: a@example.org",
        b"Cc: a@example.org\r\n",
        b"To: a@example.org\nX: y\r\n",
    ):
        with pytest.raises(ValueError, match="slot 'to'"):
            signing.signature({**values, "to": bad})
    with pytest.raises(ValueError, match="no value for slot 'url'"):
        signing.signature({k: v for k, v in values.items() if k != "url"})
    # a folded line is one line
    folded = b"To: =?utf-8?q?Z=C3=B6e?=\r\n <reader1@example.org>\r\n"
    assert signing.signature({**values, "to": folded})


# --- random personalisations, by both verifiers ----------------------------------------------

NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=0, max_size=90
)
TOKENS = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    min_size=1,
    max_size=160,
)
SUBJECTS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=140
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=SUBJECTS,
    people=st.lists(st.tuples(NAMES, TOKENS), min_size=1, max_size=3),
    seconds=st.integers(min_value=0, max_value=10**6),
)
def test_random_personalisations_verify_with_both(
    subject: str,
    people: list[tuple[str, str]],
    seconds: int,
    signer: Signer,
    judge: OpenDkim,
    issue_settings: Settings,
) -> None:
    template = issue_template(issue_settings, subject)
    signing = signing_template(signer, template, person(0))
    for n, (name, token) in enumerate(people, start=1):
        recipient = person(n, name=name.strip() or None, token=token)
        message = template.render(recipient, date=WHEN + timedelta(seconds=seconds))
        values = values_of(message, recipient.unsubscribe_url)
        assert signing.message(values) == message
        signed = signing.signature(values) + message
        assert dkimpy_verdicts(signed, signer) == [True, True], signed[:3000]
        assert opendkim_verdicts(signed, judge) == [True, True], signed[:3000]
        assert signing.signature(values, timestamp=seconds) == signer.signature(
            message, timestamp=seconds
        )


# --- the canonicaliser against dkimpy's, on arbitrary pieces --------------------------------

LINE_BITS = st.sampled_from(
    [
        b"a",
        b"word",
        b" ",
        b"  ",
        b"\t",
        b" \t ",
        b"\r\n",
        b"\r\n\r\n",
        b"=",
        b"\r",
        b".",
        b"\xc3\xa9",
    ]
)
PIECES = st.lists(st.lists(LINE_BITS, max_size=12).map(b"".join), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(static=PIECES, slots=st.lists(st.booleans(), min_size=8, max_size=8), fills=PIECES)
def test_body_hash_of_pieces_equals_dkimpy_on_the_whole(
    static: list[bytes], slots: list[bool], fills: list[bytes], signer: Signer
) -> None:
    body: list[BodyPiece] = []
    values: dict[str, bytes] = {}
    for i, piece in enumerate(static):
        body.append(piece)
        if slots[i]:
            body.append(Slot(f"s{i}"))
            values[f"s{i}"] = fills[i % len(fills)]
    body.append(b"\r\n")
    headers: list[HeaderPiece] = [
        ("From", b"From: a@test.example\r\n"),
        ("Subject", Slot("subject")),
    ]
    values["subject"] = b"Subject:  Hi \t there\r\n"
    signing = signer.template(headers, body)
    message = signing.message(values)
    # dkimpy's relaxed body canonicalisation of the whole body, hashed
    expected = hashlib.sha256(
        dkim.CanonicalizationPolicy.from_c_value(b"relaxed/relaxed").canonicalize_body(
            split_message(message)[1]
        )
    ).digest()
    header = signing.signature(values, timestamp=1)
    bh = re.search(rb"bh=([^;]+);", header)
    assert bh is not None
    assert base64.b64decode(bh.group(1)) == expected
    assert header == signer.signature(message, timestamp=1)
    assert dkimpy_verdicts(header + message, signer) == [True, True]


def test_canonical_body_lines() -> None:
    assert canonical_body_lines(b"a  b\t\tc \t\r\n \r\nd\r\n") == b"a b c\r\n\r\nd\r\n"
    assert canonical_body_lines(b"plain\r\n") == b"plain\r\n"


# --- single messages --------------------------------------------------------------------------


def confirmation(to: str = "new.reader@example.org") -> bytes:
    msg = EmailMessage()
    msg["From"] = "The Test Weekly <weekly@test.example>"
    msg["To"] = to
    msg["Subject"] = "Confirm your subscription to «The Test Weekly»"
    msg["Date"] = "Fri, 20 Nov 2026 11:00:00 +0000"
    msg["Message-ID"] = "<c1@test.example>"
    msg.set_content(
        "Please confirm:\nhttps://news.test.example/confirm/abc\n\n-- \nThe Test Weekly\n"
    )
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def test_a_single_message_verifies_with_both(signer: Signer, judge: OpenDkim) -> None:
    signed = signer.sign(confirmation())
    assert dkimpy_verdicts(signed, signer) == [True, True]
    assert opendkim_verdicts(signed, judge) == [True, True]
    names = re.search(rb"h=([^;]+);", signed)
    assert names is not None
    listed = re.sub(rb"\s", b"", names.group(1)).split(b":")
    # present once: signed twice; absent (Reply-To, List-*): signed once, so none can be added
    assert listed.count(b"from") == 2
    assert listed.count(b"reply-to") == 1
    assert listed.count(b"content-transfer-encoding") == 1


def test_a_single_message_with_bare_newlines_is_signed_as_crlf(
    signer: Signer, judge: OpenDkim
) -> None:
    signed = signer.sign(confirmation().replace(b"\r\n", b"\n"))
    assert b"\n" not in signed.replace(b"\r\n", b"")
    assert dkimpy_verdicts(signed, signer) == [True, True]
    assert opendkim_verdicts(signed, judge) == [True, True]


def test_a_message_without_from_is_refused(signer: Signer) -> None:
    with pytest.raises(ValueError, match="without From"):
        signer.sign(b"To: a@example.org\r\nSubject: x\r\n\r\nbody\r\n")


def test_rsa_alone_verifies(rsa_key: rsa.RSAPrivateKey, judge: OpenDkim) -> None:
    alone = Signer(DOMAIN, [SigningKey("news", rsa_key)])
    signed = alone.sign(confirmation())
    assert signed.count(b"DKIM-Signature:") == 1
    assert dkimpy_verdicts(signed, alone) == [True]
    assert judge.verify(signed).ok


def test_opendkim_judges_for_real(signer: Signer, judge: OpenDkim) -> None:
    # the judge is not a rubber stamp: no signature, or a key it cannot find, fails
    assert not judge.verify(confirmation()).ok
    other = Signer(DOMAIN, [SigningKey("unpublished", rsa.generate_private_key(65537, 2048))])
    verdict = judge.verify(other.sign(confirmation()))
    assert not verdict.ok
    assert verdict.queries == ("unpublished._domainkey.test.example.",)


# --- keys and records -------------------------------------------------------------------------


def test_dns_records(signer: Signer, rsa_key: rsa.RSAPrivateKey) -> None:
    records = {r.name: r for r in signer.dns_records()}
    assert set(records) == {"news._domainkey.test.example", "ed._domainkey.test.example"}
    rsa_record = records["news._domainkey.test.example"]
    assert rsa_record.value.startswith("v=DKIM1; k=rsa; p=MIIBIjAN")
    assert records["ed._domainkey.test.example"].value.startswith("v=DKIM1; k=ed25519; p=")
    line = rsa_record.zone_line()
    assert line.startswith('news._domainkey.test.example. IN TXT ( "v=DKIM1; k=rsa; p=')
    strings = re.findall(r'"([^"]*)"', line)
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == rsa_record.value


def test_signer_wants_distinct_selectors_and_a_key(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="own selector"):
        Signer(DOMAIN, [SigningKey("a", rsa_key), SigningKey("A", rsa_key)])
    with pytest.raises(ValueError, match="at least one key"):
        Signer(DOMAIN, [])
    with pytest.raises(ValueError, match="selector"):
        Signer(DOMAIN, [SigningKey("bad selector", rsa_key)])
    assert Signer("Bücher.Example.", [SigningKey("s", rsa_key)]).domain == "xn--bcher-kva.example"


def sign_with_headers(
    signer: Signer, headers: Sequence[HeaderPiece], values: Mapping[str, bytes]
) -> bytes:
    template = signer.template(headers, [b"body\r\n"])
    return template.signature(values) + template.message(values)


def test_an_absent_reply_to_is_signed_so_none_can_be_added(signer: Signer) -> None:
    signed = sign_with_headers(
        signer,
        [
            ("From", b"From: a@test.example\r\n"),
            ("Date", b"Date: Fri, 20 Nov 2026 11:00:00 +0000\r\n"),
        ],
        {},
    )
    assert dkimpy_verdicts(signed, signer) == [True, True]
    forged = signed.replace(b"From:", b"Reply-To: phish@evil.example\r\nFrom:", 1)
    assert dkimpy_verdicts(forged, signer) == [False, False]
