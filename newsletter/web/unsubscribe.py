"""``/unsubscribe/<token>``: the preferences page and RFC 8058 one-click unsubscribe.

``GET`` shows one button (leave the list the email came from) and the subscriber's other
lists. ``POST`` with ``List-Unsubscribe=One-Click`` (what mail clients send) unsubscribes at
once and answers 200: no redirect, no cookie, harmless to repeat. The same URL takes the
preferences form, which carries nothing but the token in its URL. Bad tokens get a 400 page
that says nothing about why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from newsletter import urls
from newsletter.errors import BodyTooLarge, InvalidLink, TokenError
from newsletter.states import SuppressionReason
from newsletter.store.analytics import attribute_unsubscribe
from newsletter.store.subscribers import (
    Subscriber,
    Subscription,
    find_by_uid,
    is_suppressed,
    list_ids,
    suppress,
    unsubscribe,
)
from newsletter.tokens import TokenData, TokenPurpose, read_token
from newsletter.web.context import WebContext, parse_form, read_body
from newsletter.web.security import allowed_origins, origin_allowed, refused_origin

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


@dataclass(frozen=True)
class Outcome:
    """What a page about one subscriber shows after (or instead of) a change."""

    list_name: str
    subscriber: Subscriber | None
    suppressed: bool
    left: tuple[str, ...] = ()
    # still on the list the link came from
    on_list: bool = False

    @property
    def remaining(self) -> tuple[Subscription, ...]:
        if self.subscriber is None or self.suppressed:
            return ()
        return self.subscriber.active_subscriptions


def mask_email(email: str) -> str:
    """``a•••e@example.org``: enough for the owner to recognise, little for anyone else."""
    local, _, domain = email.rpartition("@")
    shown = local[0] + "•••" + local[-1] if len(local) > 2 else local[:1] + "•••"
    return f"{shown}@{domain}"


def routes(ctx: WebContext) -> list[BaseRoute]:
    origins = allowed_origins(ctx.settings)

    def verify(token: str) -> TokenData:
        try:
            return read_token(ctx.settings.token_keys, token, TokenPurpose.UNSUBSCRIBE)
        except TokenError:
            raise InvalidLink() from None

    def invalid() -> Response:
        return ctx.page("invalid.html", status_code=400, private=True, message=None)

    def look(data: TokenData) -> Outcome:
        with ctx.engine.begin() as conn:
            return _state(conn, data, ())

    def act(data: TokenData, action: str, keep: frozenset[str]) -> Outcome:
        with ctx.engine.begin() as conn:
            if data.list_id not in list_ids(conn).values():
                raise InvalidLink()
            subscriber = find_by_uid(conn, data.subscriber_uid)
            left: list[str] = []
            if subscriber is not None:
                if action == "all":
                    suppress(
                        conn,
                        subscriber.email_normalized,
                        SuppressionReason.UNSUBSCRIBED,
                        "unsubscribe page: all lists",
                    )
                    left = [s.list_name for s in subscriber.active_subscriptions]
                elif action == "preferences":
                    for sub in subscriber.active_subscriptions:
                        if sub.list_slug not in keep:
                            unsubscribe(conn, subscriber.id, sub.list_id)
                            left.append(sub.list_name)
                else:
                    current = subscriber.subscription(data.list_id)
                    unsubscribe(conn, subscriber.id, data.list_id)
                    if current is not None:
                        left.append(current.list_name)
                came_from = subscriber.subscription(data.list_id)
                if came_from is not None and came_from.active and came_from.list_name in left:
                    # they left the list the email came from: that unsubscribe
                    attribute_unsubscribe(
                        conn,
                        subscriber_id=subscriber.id,
                        subscriber_uid=subscriber.uid,
                        list_id=data.list_id,
                        issued_at=data.issued_at,
                        now=datetime.now(UTC),
                    )
            return _state(conn, data, tuple(left))

    async def page(request: Request) -> Response:
        try:
            data = verify(request.path_params["token"])
            outcome = await run_in_threadpool(look, data)
        except InvalidLink:
            return invalid()
        if not outcome.remaining:
            # nothing left to leave: say so rather than offer a button that does nothing
            return ctx.page("unsubscribed.html", private=True, outcome=outcome, mask=mask_email)
        return ctx.page("unsubscribe.html", private=True, outcome=outcome, mask=mask_email)

    async def post(request: Request) -> Response:
        try:
            data = verify(request.path_params["token"])
        except InvalidLink:
            return invalid()
        try:
            form = await parse_form(request, await read_body(request))
        except BodyTooLarge:
            return Response("request too large\n", status_code=413, media_type="text/plain")
        if form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE:
            action = "one-click"
        else:
            # anything else that is not the preferences form still means "take me off":
            # unsubscribing is the safe direction to err in
            action = str(form.get("action") or "one-click")
        if action != "one-click" and not origin_allowed(request.headers, origins):
            # the preferences form, posted from another site's page; RFC 8058's one-click
            # POST comes from mail clients and providers from anywhere, and stays exempt
            return refused_origin()
        keep = frozenset(str(v) for v in form.getlist("keep"))
        try:
            outcome = await run_in_threadpool(act, data, action, keep)
        except InvalidLink:
            return invalid()
        return ctx.page("unsubscribed.html", private=True, outcome=outcome, mask=mask_email)

    return [
        Route(urls.UNSUBSCRIBE, page, methods=["GET"], name="unsubscribe"),
        Route(urls.UNSUBSCRIBE, post, methods=["POST"], name="unsubscribe_post"),
    ]


def _state(conn: Connection, data: TokenData, left: tuple[str, ...]) -> Outcome:
    names = {lid: slug for slug, lid in list_ids(conn).items()}
    if data.list_id not in names:
        # a genuine signature over a list that does not exist: treat as any bad link
        raise InvalidLink()
    subscriber = find_by_uid(conn, data.subscriber_uid)
    sub = subscriber.subscription(data.list_id) if subscriber else None
    list_name = sub.list_name if sub else names[data.list_id]
    suppressed = subscriber is not None and is_suppressed(conn, subscriber.email_normalized)
    return Outcome(
        list_name=list_name,
        subscriber=subscriber,
        suppressed=suppressed,
        left=left,
        on_list=sub is not None and sub.active and not suppressed,
    )
