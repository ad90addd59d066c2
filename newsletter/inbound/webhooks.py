"""Provider webhooks: who may call them, and their events as :class:`Report` s for the intake.

Pure: bytes, headers and secrets in, a verdict or reports out. Authentication per provider:

- Postmark: HTTP basic auth with ``bounces.postmark_user`` and
  ``NEWSLETTER_WEBHOOK_POSTMARK_PASSWORD`` (compared in constant time).
- Mailgun: ``signature`` = HMAC-SHA256(signing key, timestamp + token) in hex, the timestamp
  within ``bounces.webhook_max_age_seconds``, each token accepted once (:class:`ReplayGuard`).
- SendGrid: the signed event webhook, ECDSA P-256/SHA-256 over timestamp + body, with the
  verification key from ``NEWSLETTER_WEBHOOK_SENDGRID_PUBLIC_KEY``, the timestamp fresh too.
- SES: SNS's own signature (:mod:`newsletter.inbound.sns`).

An event names the delivery by our token: the provider's metadata (``[bounces] provider``
adds the header it echoes), the envelope sender it reports (VERP) or our Message-ID, which is
the token. An event that only names an address is kept for review like any other report.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.inbound import dsn, mime
from newsletter.inbound.model import (
    Action,
    AutoReplyKind,
    Detector,
    FeedbackType,
    OriginalMessage,
    Recipient,
    Report,
    ReportKind,
    Severity,
    TokenCandidate,
    TokenSource,
)
from newsletter.inbound.verp import is_token, token_in_address

#: The key our token travels under in Mailgun's and SendGrid's metadata.
METADATA_KEY = "nl_delivery"
#: Postmark's metadata key (from the ``X-PM-Metadata-newsletter-delivery`` header).
POSTMARK_METADATA_KEY = "newsletter-delivery"


class WebhookAuthError(Exception):
    """The request is not from the provider: ``status`` 401 (no or bad credentials) or 403."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


class PayloadError(Exception):
    """An authenticated request whose body is not what the provider sends (answered 400)."""


# --- authentication ---------------------------------------------------------------------------


def check_basic_auth(header: str | None, user: str, password: str) -> None:
    """Postmark: ``Authorization: Basic ...`` must carry ``user`` and ``password``."""
    if not header or not header.startswith("Basic "):
        raise WebhookAuthError(401, "no basic auth")
    try:
        given = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookAuthError(401, "malformed basic auth") from None
    expected = f"{user}:{password}".encode()
    # both compared whole, in constant time: the length of a wrong guess tells nothing either
    if not hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest()):
        raise WebhookAuthError(401, "wrong credentials")


@dataclass
class ReplayGuard:
    """Remembers signature tokens for ``ttl`` seconds, so a captured request is refused again."""

    ttl: float
    clock: Callable[[], float] = time.time
    limit: int = 100_000
    _seen: dict[str, float] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def first_use(self, token: str) -> bool:
        now = self.clock()
        with self._lock:
            if len(self._seen) >= self.limit or len(self._seen) % 1024 == 0:
                self._seen = {t: exp for t, exp in self._seen.items() if exp > now}
            if token in self._seen and self._seen[token] > now:
                return False
            if len(self._seen) >= self.limit:
                # full of live tokens: refusing is safer than forgetting one
                return False
            self._seen[token] = now + self.ttl
            return True


def check_mailgun(
    signature: Mapping[str, Any],
    key: str,
    *,
    max_age: float,
    guard: ReplayGuard,
    now: float,
) -> None:
    """Mailgun's ``signature`` object: HMAC over timestamp + token, fresh, used once."""
    timestamp, token, digest = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not (
        isinstance(timestamp, str)
        and isinstance(token, str)
        and isinstance(digest, str)
        and timestamp
        and token
        and digest
    ):
        raise WebhookAuthError(401, "no Mailgun signature")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), digest.encode()):
        raise WebhookAuthError(403, "the Mailgun signature does not verify")
    _fresh(timestamp, now, max_age)
    if len(token) > 200 or not guard.first_use(token):
        raise WebhookAuthError(403, "the Mailgun token was used before (replay)")


def check_sendgrid(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_key: str,
    *,
    max_age: float,
    now: float,
) -> None:
    """SendGrid's signed event webhook: ECDSA over timestamp + body, fresh."""
    if not signature or not timestamp:
        raise WebhookAuthError(401, "no SendGrid signature")
    key = sendgrid_key(public_key)
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise WebhookAuthError(403, "the SendGrid signature does not verify") from None
    _fresh(timestamp, now, max_age)


def sendgrid_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or PEM."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise WebhookAuthError(403, "the SendGrid verification key is not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookAuthError(403, "the SendGrid verification key is not an ECDSA key")
    return key


def _fresh(timestamp: str, now: float, max_age: float) -> None:
    try:
        when = float(timestamp)
    except ValueError:
        raise WebhookAuthError(403, "the timestamp is not a number") from None
    if abs(now - when) > max_age:
        raise WebhookAuthError(403, "stale request (timestamp outside the allowed window)")


# --- events as reports ------------------------------------------------------------------------


def _digest(provider: str, event_id: str) -> str:
    return hashlib.sha256(f"{provider}:{event_id}".encode()).hexdigest()


def _clean(value: Any, limit: int = 400) -> str | None:
    if value is None:
        return None
    text = mime.clean(str(value))
    return text[:limit] or None


def _tokens(*found: tuple[str | None, TokenSource]) -> tuple[TokenCandidate, ...]:
    out: list[TokenCandidate] = []
    for value, source in found:
        if not value:
            continue
        value = value.strip().strip("<>").strip()
        token: str | None = None
        if is_token(value):
            token = value.lower()
        else:
            local = value.partition("@")[0]
            token = local.lower() if is_token(local) else token_in_address(value)
        if token is not None:
            candidate = TokenCandidate(token, source)
            if candidate not in out:
                out.append(candidate)
    return tuple(out)


def _report(
    provider: str,
    event_id: str,
    kind: ReportKind,
    *,
    severity: Severity | None = None,
    recipients: Iterable[Recipient] = (),
    tokens: tuple[TokenCandidate, ...] = (),
    message_id: str | None = None,
    feedback_type: FeedbackType | None = None,
    auto_reply: AutoReplyKind | None = None,
    reporter: str | None = None,
) -> Report:
    recipients = tuple(recipients)
    return Report(
        kind=kind,
        detector=Detector.WEBHOOK,
        severity=severity,
        recipients=recipients,
        tokens=tokens,
        original=OriginalMessage(message_id=message_id) if message_id else None,
        feedback_type=feedback_type,
        recipient_redacted=kind is ReportKind.COMPLAINT and not recipients,
        auto_reply=auto_reply,
        reporter=reporter or provider,
        message_id=_clean(event_id, 300),
        digest=_digest(provider, event_id),
    )


def _failed(
    address: Any, severity: Severity, status: Any, diagnostic: Any, *, by_status: bool = False
) -> Recipient:
    """A failed recipient; ``by_status``: the status code decides as in a DSN (5.2.2 soft ...)."""
    code = dsn.status_code(_clean(status, 20)) if status else None
    text = _clean(diagnostic)
    if by_status and code is not None:
        severity = dsn.severity(Action.FAILED, code, text) or severity
    return Recipient(
        address=_clean(address, 320) or "",
        action=Action.FAILED,
        status=code,
        severity=severity,
        diagnostic=text,
    )


def ses_reports(message: Mapping[str, Any], sns_message_id: str) -> list[Report]:
    """An SES notification (the JSON inside an SNS ``Message``) as reports."""
    kind = message.get("notificationType") or message.get("eventType")
    mail = message.get("mail") if isinstance(message.get("mail"), dict) else {}
    assert isinstance(mail, dict)
    headers = mail.get("headers") if isinstance(mail.get("headers"), list) else []
    ours = None
    for header in headers or []:
        if (
            isinstance(header, dict)
            and str(header.get("name", "")).lower() == "x-newsletter-delivery"
        ):
            ours = str(header.get("value", ""))
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    assert isinstance(common, dict)
    message_id = _clean(common.get("messageId"), 300)
    tokens = _tokens(
        (_clean(mail.get("source"), 320), TokenSource.WEBHOOK),
        (ours, TokenSource.DELIVERY_HEADER),
        (message_id, TokenSource.MESSAGE_ID),
    )
    if kind == "Bounce":
        bounce = message.get("bounce")
        if not isinstance(bounce, dict):
            raise PayloadError("a Bounce without its bounce object")
        hard = bounce.get("bounceType") == "Permanent"
        severity = Severity.HARD if hard else Severity.SOFT
        recipients = [
            _failed(r.get("emailAddress"), severity, r.get("status"), r.get("diagnosticCode"))
            for r in bounce.get("bouncedRecipients") or []
            if isinstance(r, dict)
        ]
        return [
            _report(
                "ses",
                sns_message_id,
                ReportKind.BOUNCE,
                severity=severity,
                recipients=recipients,
                tokens=tokens,
                message_id=message_id,
                reporter=_clean(bounce.get("reportingMTA")),
            )
        ]
    if kind == "Complaint":
        complaint = message.get("complaint")
        if not isinstance(complaint, dict):
            raise PayloadError("a Complaint without its complaint object")
        recipients = [
            Recipient(address=_clean(r.get("emailAddress"), 320) or "")
            for r in complaint.get("complainedRecipients") or []
            if isinstance(r, dict)
        ]
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        kind_ = ReportKind.FEEDBACK if feedback == "not-spam" else ReportKind.COMPLAINT
        return [
            _report(
                "ses",
                sns_message_id,
                kind_,
                recipients=recipients,
                tokens=tokens,
                message_id=message_id,
                feedback_type=_feedback_type(feedback),
                reporter=_clean(complaint.get("userAgent")),
            )
        ]
    if kind in ("Delivery", "DeliveryDelay"):
        report_kind = ReportKind.DELIVERED if kind == "Delivery" else ReportKind.DELAY
        delay_severity = None if kind == "Delivery" else Severity.SOFT
        delayed = (
            message.get("deliveryDelay") if isinstance(message.get("deliveryDelay"), dict) else {}
        )
        assert isinstance(delayed, dict)
        recipients = [
            Recipient(
                address=_clean(r.get("emailAddress"), 320) or "",
                action=Action.DELAYED,
                status=_clean(r.get("status"), 20),
                severity=Severity.SOFT,
                diagnostic=_clean(r.get("diagnosticCode")),
            )
            for r in delayed.get("delayedRecipients") or []
            if isinstance(r, dict)
        ]
        return [
            _report(
                "ses",
                sns_message_id,
                report_kind,
                severity=delay_severity,
                recipients=recipients,
                tokens=tokens,
                message_id=message_id,
            )
        ]
    return []


def _feedback_type(value: str) -> FeedbackType | None:
    try:
        return FeedbackType(value.lower())
    except ValueError:
        return FeedbackType.OTHER


_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Unsubscribe"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked", "MailboxFull", "SMTPApiError"}


def postmark_reports(payload: Mapping[str, Any]) -> list[Report]:
    """One Postmark webhook body (one event) as reports."""
    record = payload.get("RecordType")
    event_id = str(payload.get("ID") or payload.get("MessageID") or "")
    if not event_id:
        raise PayloadError("a Postmark event without an ID")
    metadata = payload.get("Metadata") if isinstance(payload.get("Metadata"), dict) else {}
    assert isinstance(metadata, dict)
    tokens = _tokens((_clean(metadata.get(POSTMARK_METADATA_KEY)), TokenSource.WEBHOOK))
    address = payload.get("Email") or payload.get("Recipient")
    key = f"{record}:{event_id}"
    if record == "Bounce":
        kind = str(payload.get("Type") or "")
        if kind == "AutoResponder":
            return [
                _report(
                    "postmark",
                    key,
                    ReportKind.AUTO_REPLY,
                    tokens=tokens,
                    auto_reply=AutoReplyKind.VACATION,
                )
            ]
        if kind in ("SpamComplaint", "SpamNotification"):
            return [
                _report(
                    "postmark",
                    key,
                    ReportKind.COMPLAINT,
                    tokens=tokens,
                    feedback_type=FeedbackType.ABUSE,
                )
            ]
        if kind not in _POSTMARK_HARD | _POSTMARK_SOFT:
            # "Undeliverable", "Unknown", challenge-responses: kept for review, not counted
            return [_report("postmark", key, ReportKind.UNKNOWN, tokens=tokens)]
        severity = Severity.HARD if kind in _POSTMARK_HARD else Severity.SOFT
        recipient = _failed(
            address, severity, None, payload.get("Details") or payload.get("Description")
        )
        return [
            _report(
                "postmark",
                key,
                ReportKind.BOUNCE,
                severity=severity,
                recipients=[recipient],
                tokens=tokens,
            )
        ]
    if record == "SpamComplaint":
        return [
            _report(
                "postmark",
                key,
                ReportKind.COMPLAINT,
                recipients=[Recipient(address=_clean(address, 320) or "")],
                tokens=tokens,
                feedback_type=FeedbackType.ABUSE,
            )
        ]
    if record == "Delivery":
        return [_report("postmark", key, ReportKind.DELIVERED, tokens=tokens)]
    return []


def mailgun_reports(event: Mapping[str, Any]) -> list[Report]:
    """Mailgun's ``event-data`` as reports."""
    event_id = str(event.get("id") or "")
    if not event_id:
        raise PayloadError("a Mailgun event without an id")
    variables = event.get("user-variables") if isinstance(event.get("user-variables"), dict) else {}
    assert isinstance(variables, dict)
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    assert isinstance(message, dict)
    headers = message.get("headers") if isinstance(message.get("headers"), dict) else {}
    assert isinstance(headers, dict)
    message_id = _clean(headers.get("message-id"), 300)
    tokens = _tokens(
        (_clean(variables.get(METADATA_KEY)), TokenSource.WEBHOOK),
        (message_id, TokenSource.MESSAGE_ID),
    )
    kind = event.get("event")
    address = event.get("recipient")
    if kind == "failed":
        status = (
            event.get("delivery-status") if isinstance(event.get("delivery-status"), dict) else {}
        )
        assert isinstance(status, dict)
        diagnostic = status.get("message") or status.get("description")
        if event.get("severity") == "temporary":
            # Mailgun is still retrying: a delay, soft
            delayed = Recipient(
                address=_clean(address, 320) or "",
                action=Action.DELAYED,
                status=_clean(status.get("enhanced-code"), 20),
                severity=Severity.SOFT,
                diagnostic=_clean(diagnostic),
            )
            return [
                _report(
                    "mailgun",
                    event_id,
                    ReportKind.DELAY,
                    severity=Severity.SOFT,
                    recipients=[delayed],
                    tokens=tokens,
                    message_id=message_id,
                )
            ]
        enhanced = status.get("enhanced-code") or _enhanced(status.get("code"))
        recipient = _failed(address, Severity.HARD, enhanced, diagnostic, by_status=True)
        return [
            _report(
                "mailgun",
                event_id,
                ReportKind.BOUNCE,
                severity=recipient.severity,
                recipients=[recipient],
                tokens=tokens,
                message_id=message_id,
            )
        ]
    if kind == "complained":
        return [
            _report(
                "mailgun",
                event_id,
                ReportKind.COMPLAINT,
                recipients=[Recipient(address=_clean(address, 320) or "")],
                tokens=tokens,
                message_id=message_id,
                feedback_type=FeedbackType.ABUSE,
            )
        ]
    if kind == "delivered":
        return [
            _report("mailgun", event_id, ReportKind.DELIVERED, tokens=tokens, message_id=message_id)
        ]
    return []


def sendgrid_reports(events: Iterable[Any]) -> list[Report]:
    """A SendGrid event webhook body (a JSON array of events) as reports."""
    reports: list[Report] = []
    for event in events:
        if not isinstance(event, dict):
            raise PayloadError("a SendGrid event that is not an object")
        event_id = str(event.get("sg_event_id") or "")
        if not event_id:
            raise PayloadError("a SendGrid event without sg_event_id")
        message_id = _clean(event.get("smtp-id"), 300)
        tokens = _tokens(
            (_clean(event.get(METADATA_KEY)), TokenSource.WEBHOOK),
            (message_id, TokenSource.MESSAGE_ID),
        )
        kind = event.get("event")
        address = event.get("email")
        if kind == "bounce":
            # "bounce" is the address refused; "blocked" the message (content, reputation)
            severity = Severity.SOFT if event.get("type") == "blocked" else Severity.HARD
            recipient = _failed(
                address,
                severity,
                event.get("status"),
                event.get("reason"),
                by_status=event.get("type") != "blocked",
            )
            reports.append(
                _report(
                    "sendgrid",
                    event_id,
                    ReportKind.BOUNCE,
                    severity=recipient.severity,
                    recipients=[recipient],
                    tokens=tokens,
                    message_id=message_id,
                )
            )
        elif kind == "deferred":
            recipient = Recipient(
                address=_clean(address, 320) or "",
                action=Action.DELAYED,
                severity=Severity.SOFT,
                diagnostic=_clean(event.get("response")),
            )
            reports.append(
                _report(
                    "sendgrid",
                    event_id,
                    ReportKind.DELAY,
                    severity=Severity.SOFT,
                    recipients=[recipient],
                    tokens=tokens,
                    message_id=message_id,
                )
            )
        elif kind == "spamreport":
            reports.append(
                _report(
                    "sendgrid",
                    event_id,
                    ReportKind.COMPLAINT,
                    recipients=[Recipient(address=_clean(address, 320) or "")],
                    tokens=tokens,
                    message_id=message_id,
                    feedback_type=FeedbackType.ABUSE,
                )
            )
        elif kind == "delivered":
            reports.append(
                _report(
                    "sendgrid", event_id, ReportKind.DELIVERED, tokens=tokens, message_id=message_id
                )
            )
    return reports


def _enhanced(code: Any) -> str | None:
    if isinstance(code, int) and 400 <= code < 600:
        return f"{code // 100}.0.0"
    return None
