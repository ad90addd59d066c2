"""``POST /subscribe`` (form or JSON) and ``GET /confirm/<token>``: double opt-in.

The response never says whether an address was new, already subscribed or suppressed, and
the confirmation email goes out after the response (a background task), so timing does not
tell either. A filled honeypot field or a per-address limit is answered exactly like success.
What can be known without the store is checked before answering (an address the relay cannot
take, a name no database can hold), so the background work fails only for reasons that are
the same for every address.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter import urls
from newsletter.addresses import (
    check_sendable,
    clean_name,
    mailbox_key,
    normalize_email,
    storable,
)
from newsletter.emails import CONFIRM_MAX_AGE_DAYS, build_confirmation
from newsletter.errors import (
    BodyTooLarge,
    FormError,
    InvalidAddressError,
    NewsletterError,
    TokenError,
)
from newsletter.states import SubscriptionStatus
from newsletter.store.subscribers import (
    Subscriber,
    confirm_subscriber,
    find_by_uid,
    is_suppressed,
    request_subscription,
)
from newsletter.tokens import TokenData, TokenPurpose, make_token, read_token
from newsletter.urls import confirm_url
from newsletter.web.context import (
    WebContext,
    parse_form,
    read_body,
)

log = logging.getLogger(__name__)


def N_(message: str) -> str:
    """Mark ``message`` for the catalog; it is translated where it is shown."""
    return message


HONEYPOT_FIELD = "website"
ACCEPTED = N_("Almost done: check your inbox for a link to confirm your subscription.")


@dataclass(frozen=True)
class SubscribeForm:
    email: str
    name: str | None
    lists: tuple[str, ...]
    honeypot: bool


def routes(ctx: WebContext) -> list[BaseRoute]:
    async def form_page(request: Request) -> Response:
        # ?list=business ticks that list (the archive's "more from us" links ask for it)
        wanted = request.query_params.get("list")
        return ctx.page("subscribe.html", values={}, error=None, lists=_choices(ctx, wanted))

    async def subscribe(request: Request) -> Response:
        wants_json = "application/json" in request.headers.get("content-type", "")
        client_ip = request.client.host if request.client else "unknown"
        if not ctx.per_ip.hit(client_key(client_ip)):
            return _reply(ctx, wants_json, 429, N_("Too many requests; please try again later."))
        try:
            form = await _read_form(request, wants_json)
        except FormError as exc:
            return _reply(ctx, wants_json, exc.status, str(exc))
        # shown back in the form: a lone surrogate could not even be written into the page
        values = {"email": _printable(form.email), "name": _printable(form.name or "")}
        try:
            normalized = normalize_email(form.email)
            # no SMTPUTF8: a non-ASCII local part would fail at the relay, after the answer
            check_sendable(normalized)
            lists = _check_lists(ctx, form.lists)
        except FormError as exc:
            return _reply(ctx, wants_json, 400, str(exc), values=values)
        except InvalidAddressError as exc:
            # email-validator's reason is English: it is given only where the language is
            message = ctx.gettext(N_("That email address is not valid: %(reason)s")) % {
                "reason": exc.reason
            }
            return _reply(ctx, wants_json, 400, message, values=values)
        if form.honeypot or not ctx.per_address.hit(mailbox_key(normalized)):
            return _accepted(ctx, wants_json)
        task = BackgroundTask(_subscribe_and_mail, ctx, form, lists)
        response = _accepted(ctx, wants_json)
        response.background = task
        return response

    def verify(token: str) -> TokenData:
        return read_token(
            ctx.settings.token_keys,
            token,
            TokenPurpose.CONFIRM,
            max_age_seconds=CONFIRM_MAX_AGE_DAYS * 86400,
        )

    async def confirm_page(request: Request) -> Response:
        """The link in the email shows a button and changes nothing.

        Mail security scanners open every link in an email; if opening it confirmed, a
        subscription requested in someone else's name would confirm itself.
        """
        try:
            data = verify(request.path_params["token"])
        except TokenError as exc:
            return ctx.page("invalid.html", status_code=400, private=True, message=str(exc))

        def look() -> bool:
            with ctx.engine.connect() as conn:
                found = find_by_uid(conn, data.subscriber_uid)
                return found is not None and not is_suppressed(conn, found.email_normalized)

        if not await run_in_threadpool(look):
            return ctx.page("invalid.html", status_code=400, private=True, message=None)
        return ctx.page("confirm.html", private=True)

    async def confirm(request: Request) -> Response:
        try:
            data = verify(request.path_params["token"])
        except TokenError as exc:
            return ctx.page("invalid.html", status_code=400, private=True, message=str(exc))

        # the link carries the number of its request (the token's list field): it confirms
        # what was waiting then and nothing asked for since. A link mailed before requests
        # were numbered carries 0 and goes by its issued-at, which has whole seconds: the
        # request it answers was stored within that second.
        issued = datetime.fromtimestamp(data.issued_at + 1, UTC)

        def work() -> Subscriber | None:
            with ctx.engine.begin() as conn:
                return confirm_subscriber(
                    conn, data.subscriber_uid, link=data.list_id, issued_before=issued
                )

        subscriber = await run_in_threadpool(work)
        if subscriber is None:
            return ctx.page("invalid.html", status_code=400, private=True, message=None)
        return ctx.page(
            "confirmed.html",
            private=True,
            # what they receive: a list still waiting for a link of its own is not on it
            subscriptions=[
                s for s in subscriber.subscriptions if s.status is SubscriptionStatus.CONFIRMED
            ],
        )

    return [
        Route(urls.HOME, form_page, methods=["GET"], name="home"),
        Route(urls.SUBSCRIBE, form_page, methods=["GET"], name="subscribe_form"),
        Route(urls.SUBSCRIBE, subscribe, methods=["POST"], name="subscribe"),
        Route(urls.CONFIRM, confirm_page, methods=["GET"], name="confirm_page"),
        Route(urls.CONFIRM, confirm, methods=["POST"], name="confirm"),
    ]


async def _subscribe_and_mail(ctx: WebContext, form: SubscribeForm, lists: list[str]) -> None:
    """Record the request and send the confirmation; failures are logged, never shown."""
    try:
        message = await run_in_threadpool(_record, ctx, form, lists)
        if message is not None:
            await ctx.mailer.send(message)
    except NewsletterError as exc:
        log.warning("subscribe: confirmation not sent: %s", type(exc).__name__)
    except Exception:
        log.exception("subscribe: unexpected failure")


def _record(ctx: WebContext, form: SubscribeForm, lists: list[str]) -> EmailMessage | None:
    """Store the request; the confirmation message when one is due (blocking: a thread)."""
    ids = ctx.list_ids()
    with ctx.engine.begin() as conn:
        outcome = request_subscription(
            conn,
            form.email,
            list_ids=[ids[slug] for slug in lists],
            name=form.name,
            confirmations_per_day=ctx.settings.subscribe.confirmations_per_day,
        )
    if outcome.subscriber is None or outcome.confirmation is None:
        return None
    subscriber = outcome.subscriber
    # the CONFIRM token's list field carries the request's number (consent.link_confirms)
    token = make_token(
        ctx.settings.secret_key, TokenPurpose.CONFIRM, subscriber.uid, outcome.confirmation
    )
    by_id = {ids[slug]: slug for slug in ids}
    pending = [
        ctx.settings.lists[by_id[lid]]
        for lid in outcome.confirms
        if lid in by_id and by_id[lid] in ctx.settings.lists
    ]
    return build_confirmation(
        ctx.settings,
        ctx.pages,
        to=subscriber.email,
        # whoever filled in the form chose the name, and the address may be someone else's:
        # the request must not put its own words (a lure, a link) in front of that person
        name=None,
        link=confirm_url(ctx.settings.publication.base_url, token),
        lists=pending,
    )


def client_key(host: str) -> str:
    """The per-IP limit's key: an IPv4 address, or the /64 an IPv6 client is given.

    One IPv6 line hands its holder a whole /64; keyed by full address, rotating the interface
    id would reset the count with every request.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


async def _read_form(request: Request, wants_json: bool) -> SubscribeForm:
    try:
        body = await read_body(request)
    except BodyTooLarge:
        raise FormError(N_("The request is too large."), status=413) from None
    if wants_json:
        try:
            data = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise FormError(N_("The request body is not valid JSON.")) from None
        if not isinstance(data, dict):
            raise FormError(N_("Send a JSON object with an 'email' field."))
        raw_lists = data.get("lists") or []
        if isinstance(raw_lists, str):
            raw_lists = [raw_lists]
        if not isinstance(raw_lists, list) or not all(isinstance(x, str) for x in raw_lists):
            raise FormError(N_("'lists' must be a list of list names."))
        email, name, honeypot = data.get("email"), data.get("name"), data.get(HONEYPOT_FIELD)
        lists = tuple(raw_lists)
    else:
        form = await parse_form(request, body)
        email, name, honeypot = form.get("email"), form.get("name"), form.get(HONEYPOT_FIELD)
        lists = tuple(str(v) for v in form.getlist("lists"))
    if not isinstance(email, str) or not email.strip():
        raise FormError(N_("Please enter your email address."))
    if name is not None and not isinstance(name, str):
        raise FormError(N_("'name' must be text."))
    if name is not None and not storable(name):
        raise FormError(N_("The name contains characters that cannot be stored; please retype it."))
    return SubscribeForm(
        email=email,
        name=clean_name(name),
        lists=lists,
        honeypot=bool(honeypot),
    )


def _printable(value: str) -> str:
    """``value`` with anything UTF-8 cannot encode (lone surrogates) replaced, for display."""
    if storable(value):
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


def _check_lists(ctx: WebContext, requested: tuple[str, ...]) -> list[str]:
    slugs = list(dict.fromkeys(requested)) or [ctx.settings.publication.default_list]
    for slug in slugs:
        if slug not in ctx.settings.lists:
            raise FormError(N_("Please choose one of the newsletters offered."))
    return slugs


def _choices(ctx: WebContext, wanted: str | None = None) -> list[Mapping[str, Any]]:
    checked = wanted if wanted in ctx.settings.lists else ctx.settings.publication.default_list
    return [
        {"slug": slug, "list": ml, "checked": slug == checked}
        for slug, ml in ctx.settings.lists.items()
    ]


def _accepted(ctx: WebContext, wants_json: bool) -> Response:
    if wants_json:
        message = ctx.gettext(ACCEPTED)
        return JSONResponse({"status": "pending", "message": message}, status_code=202)
    return ctx.page("check_inbox.html")


def _reply(
    ctx: WebContext,
    wants_json: bool,
    status: int,
    message: str,
    *,
    values: Mapping[str, str] | None = None,
) -> Response:
    # a validator's reason may quote the input, lone surrogates and all
    message = _printable(ctx.gettext(message))
    if wants_json:
        return JSONResponse({"status": "error", "message": message}, status_code=status)
    return ctx.page(
        "subscribe.html",
        status_code=status,
        values=values or {},
        error=message,
        lists=_choices(ctx),
    )
