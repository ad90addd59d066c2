"""``/join/<token>``: "more from us", one click from an issue onto another of our lists.

The token was signed into one recipient's copy of an issue for one list (its purpose is
``JOIN``; a link for one list joins only that list). ``GET`` shows the list and a button and
changes nothing, because mail scanners open every link; ``POST`` joins, confirmed at once: the
person proved control of the mailbox by being a confirmed recipient (see
:func:`newsletter.store.subscribers.join_list` for who is refused).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from newsletter.config import MailingList
from newsletter.errors import TokenError
from newsletter.store.subscribers import JoinOutcome, find_by_uid, join_list, list_ids
from newsletter.tokens import TokenData, TokenPurpose, read_token
from newsletter.web.context import WebContext
from newsletter.web.unsubscribe import mask_email

# An issue is read for a few weeks; a forwarded copy should not keep the button working.
JOIN_MAX_AGE_DAYS = 30


def routes(ctx: WebContext) -> list[BaseRoute]:
    def verify(token: str) -> TokenData:
        return read_token(
            ctx.settings.token_keys,
            token,
            TokenPurpose.JOIN,
            max_age_seconds=JOIN_MAX_AGE_DAYS * 86400,
        )

    def invalid(message: str | None = None) -> Response:
        return ctx.page("invalid.html", status_code=400, private=True, message=message)

    def target(conn_list_ids: dict[str, int], data: TokenData) -> MailingList | None:
        for slug, list_id in conn_list_ids.items():
            if list_id == data.list_id:
                return ctx.settings.lists.get(slug)
        return None

    def look(data: TokenData, *, act: bool) -> tuple[JoinOutcome, MailingList | None, str]:
        with ctx.engine.begin() as conn:
            mailing_list = target(list_ids(conn), data)
            subscriber = find_by_uid(conn, data.subscriber_uid)
            if mailing_list is None or subscriber is None:
                return JoinOutcome.REFUSED, None, ""
            outcome = join_list(conn, data.subscriber_uid, data.list_id, dry_run=not act)
            return outcome, mailing_list, mask_email(subscriber.email)

    async def page(request: Request) -> Response:
        try:
            data = verify(request.path_params["token"])
        except TokenError as exc:
            return invalid(str(exc))
        outcome, mailing_list, address = await run_in_threadpool(look, data, act=False)
        if outcome is JoinOutcome.REFUSED or mailing_list is None:
            return invalid()
        already = outcome is JoinOutcome.ALREADY
        return ctx.page(
            "join.html", private=True, mailing_list=mailing_list, address=address, already=already
        )

    async def post(request: Request) -> Response:
        try:
            data = verify(request.path_params["token"])
        except TokenError as exc:
            return invalid(str(exc))
        outcome, mailing_list, address = await run_in_threadpool(look, data, act=True)
        if outcome is JoinOutcome.REFUSED or mailing_list is None:
            return invalid()
        return ctx.page("joined.html", private=True, mailing_list=mailing_list, address=address)

    return [
        Route("/join/{token}", page, methods=["GET"], name="join"),
        Route("/join/{token}", post, methods=["POST"], name="join_post"),
    ]
