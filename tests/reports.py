"""Reports for tests, written the way real servers write them: RFC 3464 DSNs and RFC 5965 ARF.

The bounce corpus (``tests/data/inbound``) holds hand-written samples for the parser; these
builders make reports about deliveries a test has just sent, so their tokens verify.
"""

from __future__ import annotations

import secrets


def _headers_of(original: bytes) -> str:
    return original.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace") + "\r\n"


def dsn(
    *,
    to: str,
    recipients: list[tuple[str, str, str]],
    original: bytes | None = None,
    reporting_mta: str = "mail.test.example",
    message_id: str | None = None,
) -> bytes:
    """A Postfix-shaped DSN to ``to`` (the VERP address); ``recipients`` are
    ``(address, action, status)`` with action ``failed``/``delayed``/``delivered``."""
    boundary = "dsn-" + secrets.token_hex(6)
    message_id = message_id or f"<{secrets.token_hex(8)}@mail.test.example>"
    blocks = []
    for address, action, status in recipients:
        code = "550" if status.startswith("5") else "452"
        blocks.append(
            f"Final-Recipient: rfc822; {address}\r\n"
            f"Original-Recipient: rfc822;{address}\r\n"
            f"Action: {action}\r\n"
            f"Status: {status}\r\n"
            "Remote-MTA: dns; mx.example.net\r\n"
            f"Diagnostic-Code: smtp; {code} {status} <{address}>: test reply\r\n"
        )
    text = (
        "From: MAILER-DAEMON@mail.test.example (Mail Delivery System)\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {message_id}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mail.test.example.\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {reporting_mta}\r\n\r\n" + "\r\n".join(blocks) + "\r\n"
    )
    if original is not None:
        text += f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n" + _headers_of(original)
    text += f"\r\n--{boundary}--\r\n"
    return text.encode("ascii")


def arf(*, original: bytes, to: str = "fbl@bounce.test.example", redacted: bool = True) -> bytes:
    """A Yahoo-like feedback-loop complaint about ``original`` (its headers come back)."""
    boundary = "arf-" + secrets.token_hex(6)
    headers = _headers_of(original)
    if redacted:
        # the provider strips the recipient and our delivery header alike
        headers = "\r\n".join(
            "To: redacted@example.net" if line.lower().startswith("to:") else line
            for line in headers.split("\r\n")
            if not line.lower().startswith("x-newsletter-delivery:")
        )
    text = (
        "From: feedback@fbl.example.net\r\n"
        f"To: {to}\r\n"
        "Subject: FW: complaint\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@fbl.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
        + ("" if redacted else "Original-Rcpt-To: reader@example.org\r\n")
        + f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        + headers
        + f"\r\n--{boundary}--\r\n"
    )
    return text.encode("ascii")


def vacation(*, to: str) -> bytes:
    return (
        "From: Reader <reader@example.org>\r\n"
        f"To: {to}\r\n"
        "Subject: Out of office: The Test Weekly\r\n"
        "Auto-Submitted: auto-replied\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@example.org>\r\n"
        "\r\nI am away until Monday.\r\n"
    ).encode("ascii")
