"""``POST /webhooks/{ses,postmark,mailgun,sendgrid}``: provider events into the intake.

Each endpoint answers 404 while its secret is not configured, 401 without credentials, 403 for
a bad signature, a stale timestamp, a replayed token or an SNS topic we did not subscribe to,
400 for an authenticated body that is not the provider's format, 413 for a body over the
limit, 503 when the store cannot take the events (the provider retries), and 200 once every
event is stored. Never a 500: nothing about a request turns into an unhandled error.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter import urls
from newsletter.errors import BodyTooLarge, NewsletterError
from newsletter.inbound.intake import Intake
from newsletter.inbound.model import Report
from newsletter.inbound.sns import (
    Fetcher,
    SnsError,
    SnsVerifier,
    https_fetcher,
    is_sns_url,
    system_roots,
)
from newsletter.inbound.webhooks import (
    PayloadError,
    ReplayGuard,
    WebhookAuthError,
    check_basic_auth,
    check_mailgun,
    check_sendgrid,
    mailgun_reports,
    postmark_reports,
    sendgrid_reports,
    ses_reports,
)
from newsletter.logfmt import log_event
from newsletter.states import EventSource
from newsletter.web.context import WebContext, read_body

# SendGrid batches up to a thousand events in one POST
MAX_WEBHOOK_BYTES = 2 * 1024 * 1024
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


def _text(status: int, message: str, **headers: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=status, headers=headers)


def routes(
    ctx: WebContext,
    *,
    sns_verifier: SnsVerifier | None = None,
    clock: Callable[[], float] = time.time,
) -> list[BaseRoute]:
    """The four endpoints; ``sns_verifier`` brings the fetcher SNS URLs go through (tests
    hand in one that fetches nothing and trusts their own CA)."""
    settings = ctx.settings
    secrets = settings.webhooks
    bounces = settings.bounces
    intake = Intake(settings, ctx.engine, clock=lambda: datetime.fromtimestamp(clock(), UTC))
    topics = {t.strip() for t in bounces.ses_topic_arns.split(",") if t.strip()}
    if sns_verifier is None and topics:
        sns_verifier = SnsVerifier(https_fetcher(), system_roots())
    verifier = sns_verifier
    guard = ReplayGuard(ttl=2 * bounces.webhook_max_age_seconds, clock=clock)

    async def take(source: EventSource, reports: list[Report], body: bytes) -> Response:
        def store() -> int:
            with ctx.engine.begin() as conn:
                for report in reports:
                    intake.take_report(
                        report, source, raw=body if len(reports) == 1 else None, conn=conn
                    )
            return len(reports)

        try:
            count = await run_in_threadpool(store)
        except NewsletterError as exc:
            log_event(
                "webhook_store_error", {"source": source.value}, level=logging.ERROR, error=str(exc)
            )
            return _text(503, "cannot store the events now; retry later")
        return _text(200, f"ok: {count} event(s)")

    async def guarded(
        request: Request, source: EventSource, handler: Callable[[bytes], Any]
    ) -> Response:
        try:
            body = await read_body(request, MAX_WEBHOOK_BYTES)
        except BodyTooLarge:
            return _text(413, "request too large")
        try:
            result = await handler(body)
        except WebhookAuthError as exc:
            log_event(
                "webhook_refused",
                {"source": source.value},
                level=logging.WARNING,
                reason=exc.reason,
            )
            headers = (
                {"WWW-Authenticate": 'Basic realm="webhooks"'}
                if exc.status == 401 and source is EventSource.POSTMARK
                else {}
            )
            return _text(
                exc.status, "unauthorized" if exc.status == 401 else "forbidden", **headers
            )
        except (PayloadError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log_event(
                "webhook_bad_payload",
                {"source": source.value},
                level=logging.WARNING,
                error=str(exc)[:200],
            )
            return _text(400, "not a payload this endpoint understands")
        if isinstance(result, Response):
            return result
        reports: list[Report] = result
        return await take(source, reports, body)

    def json_body(body: bytes) -> Any:
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PayloadError(f"not JSON: {exc}") from None

    # --- SES (SNS) ----------------------------------------------------------------------

    async def ses(request: Request) -> Response:
        if not topics or verifier is None:
            return _text(404, "not configured")
        fetcher: Fetcher = verifier.fetch

        async def handle(body: bytes) -> Any:
            try:
                message = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                # not even JSON: nobody we know sent it
                raise WebhookAuthError(403, "not an SNS message") from None
            if not isinstance(message, dict):
                raise WebhookAuthError(403, "not an SNS message")
            try:
                await run_in_threadpool(verifier.verify, message)
            except SnsError as exc:
                raise WebhookAuthError(403, exc.reason) from None
            if message.get("TopicArn") not in topics:
                raise WebhookAuthError(403, "a topic we did not subscribe to")
            stamp = _sns_time(message.get("Timestamp"))
            if stamp is None or abs(clock() - stamp) > bounces.webhook_max_age_seconds:
                raise WebhookAuthError(403, "stale SNS message")
            kind = message.get("Type")
            if kind == "SubscriptionConfirmation":
                url = message.get("SubscribeURL")
                if not isinstance(url, str) or not is_sns_url(url):
                    raise WebhookAuthError(403, "the subscribe URL is not on an SNS host")
                try:
                    await run_in_threadpool(fetcher, url)
                except Exception as exc:  # the fetcher's errors: network, HTTP
                    log_event("ses_confirm_failed", {}, level=logging.WARNING, error=str(exc)[:200])
                    return _text(503, "could not confirm the subscription; SNS will retry")
                log_event("ses_subscribed", {}, topic=message.get("TopicArn"))
                return _text(200, "subscribed")
            if kind == "UnsubscribeConfirmation":
                return _text(200, "ok")
            inner = json_body(str(message.get("Message", "")).encode())
            if not isinstance(inner, dict):
                raise PayloadError("the SNS Message is not a JSON object")
            return ses_reports(inner, str(message.get("MessageId") or ""))

        return await guarded(request, EventSource.SES, handle)

    # --- Postmark -----------------------------------------------------------------------

    async def postmark(request: Request) -> Response:
        password = secrets.postmark_password
        if not password:
            return _text(404, "not configured")

        async def handle(body: bytes) -> Any:
            check_basic_auth(request.headers.get("authorization"), bounces.postmark_user, password)
            payload = json_body(body)
            if not isinstance(payload, dict):
                raise PayloadError("not a JSON object")
            return postmark_reports(payload)

        return await guarded(request, EventSource.POSTMARK, handle)

    # --- Mailgun ------------------------------------------------------------------------

    async def mailgun(request: Request) -> Response:
        key = secrets.mailgun_signing_key
        if not key:
            return _text(404, "not configured")

        async def handle(body: bytes) -> Any:
            try:
                payload = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise WebhookAuthError(401, "no Mailgun signature") from None
            signature = payload.get("signature") if isinstance(payload, dict) else None
            if not isinstance(signature, dict):
                raise WebhookAuthError(401, "no Mailgun signature")
            check_mailgun(
                signature, key, max_age=bounces.webhook_max_age_seconds, guard=guard, now=clock()
            )
            event = payload.get("event-data")
            if not isinstance(event, dict):
                raise PayloadError("no event-data")
            return mailgun_reports(event)

        return await guarded(request, EventSource.MAILGUN, handle)

    # --- SendGrid -----------------------------------------------------------------------

    async def sendgrid(request: Request) -> Response:
        key = secrets.sendgrid_public_key
        if not key:
            return _text(404, "not configured")

        async def handle(body: bytes) -> Any:
            check_sendgrid(
                body,
                request.headers.get(SENDGRID_SIGNATURE),
                request.headers.get(SENDGRID_TIMESTAMP),
                key,
                max_age=bounces.webhook_max_age_seconds,
                now=clock(),
            )
            events = json_body(body)
            if not isinstance(events, list):
                raise PayloadError("not a JSON array of events")
            return sendgrid_reports(events)

        return await guarded(request, EventSource.SENDGRID, handle)

    return [
        Route(urls.WEBHOOK_SES, ses, methods=["POST"], name="webhook_ses"),
        Route(urls.WEBHOOK_POSTMARK, postmark, methods=["POST"], name="webhook_postmark"),
        Route(urls.WEBHOOK_MAILGUN, mailgun, methods=["POST"], name="webhook_mailgun"),
        Route(urls.WEBHOOK_SENDGRID, sendgrid, methods=["POST"], name="webhook_sendgrid"),
    ]


def _sns_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
