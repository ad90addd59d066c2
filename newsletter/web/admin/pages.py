"""The dashboard's pages: sends, one issue's report, list growth, and the subscriber lookup.

Every page reads through :mod:`newsletter.store.dashboard` with the editor's lists, so an id
or slug in the URL that the account does not cover answers 404, exactly like one that does
not exist. People are named in URLs by their random uid, never a row id or an address.
Acting on a person (unsubscribe, suppress, erase) takes two steps: the button opens a page
that says what will happen, and only its form, with the CSRF token and ``confirm=yes``,
does it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from newsletter import charts, urls
from newsletter.report import (
    COMPLAINT_ALARM,
    COMPLAINT_WARN,
    GROWTH_KINDS,
    HARD_BOUNCE_WARN,
    OPENS_NOTE,
    bounce_level,
    complaint_level,
    issue_report,
    list_growth,
)
from newsletter.states import SendStatus, SuppressionReason
from newsletter.store.analytics import subscriber_hits
from newsletter.store.dashboard import (
    find_people,
    may_see_person,
    person_deliveries,
    person_unsubscribes,
    sends,
    visible_lists,
)
from newsletter.store.issues import find_issue
from newsletter.store.subscribers import (
    Subscriber,
    erase,
    find_by_uid,
    suppress,
    suppression_reason,
    unsubscribe,
)
from newsletter.web.admin.context import AdminContext, session_of

ISSUES = urls.ADMIN
EVENTS = urls.ADMIN + "/events"
ISSUE = urls.ADMIN + "/issues/{list}/{slug}"
GROWTH = urls.ADMIN + "/growth"
PEOPLE = urls.ADMIN + "/subscribers"
PERSON = urls.ADMIN + "/subscribers/{uid}"
ACTION = urls.ADMIN + "/subscribers/{uid}/{action}"
ACTIONS = {
    "unsubscribe": "Unsubscribe from a list",
    "suppress": "Suppress: never mail again",
    "erase": "Erase: delete their data",
}
# a live stream ends after this long; the browser's EventSource then reconnects by itself
STREAM_SECONDS = 300.0
POLL_SECONDS = 1.0


def _not_found() -> HTTPException:
    return HTTPException(404, "not found")


def routes(ctx: AdminContext) -> list[BaseRoute]:
    def allowed(request: Request) -> tuple[str, ...] | None:
        return session_of(request).editor.lists

    # --- sends and their progress -------------------------------------------------------------

    async def issues_page(request: Request) -> Response:
        lists = allowed(request)

        def read() -> list[Any]:
            with ctx.engine.connect() as conn:
                return sends(conn, lists)

        found = await run_in_threadpool(read)
        live = any(s.status is not SendStatus.FINISHED for s in found)
        return ctx.page("issues.html", request, sends=found, live=live, events=EVENTS)

    async def events(request: Request) -> Response:
        """Server-sent events: each open send's counts when they change; ends when all are done."""
        lists = allowed(request)

        def read() -> list[dict[str, Any]]:
            with ctx.engine.connect() as conn:
                return [s.as_progress() for s in sends(conn, lists, limit=20, open_only=True)]

        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 3000\n\n"
            last: dict[int, dict[str, Any]] = {}
            loop = asyncio.get_running_loop()
            ends = loop.time() + STREAM_SECONDS
            while True:
                current = {p["id"]: p for p in await run_in_threadpool(read)}
                # a send that left the open set since the last look: say how it ended
                for gone in set(last) - set(current):
                    final = await run_in_threadpool(_final_progress, ctx, gone, lists)
                    if final is not None:
                        current[gone] = final
                for key, progress in current.items():
                    if last.get(key) != progress:
                        yield f"event: progress\ndata: {json.dumps(progress)}\n\n".encode()
                last = {k: v for k, v in current.items() if v["status"] != "finished"}
                if not last:
                    yield b"event: done\ndata: {}\n\n"
                    return
                if loop.time() >= ends or await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_SECONDS)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    # --- one issue ----------------------------------------------------------------------------

    async def issue_page(request: Request) -> Response:
        list_slug = request.path_params["list"]
        slug = request.path_params["slug"]
        if not session_of(request).editor.may_see(list_slug):
            raise _not_found()

        def read() -> Any:
            ref = find_issue(ctx.engine, slug, list_slug)
            return None if ref is None else issue_report(ctx.engine, ref)

        report = await run_in_threadpool(read)
        if report is None:
            raise _not_found()
        steps = report.deliveries_per_bucket(24)
        deliveries_chart = charts.columns(
            [(t.astimezone(UTC).strftime("%H:%M"), n) for t, n in steps],
            title="Deliveries over time",
        )
        clicks_chart = charts.bars(
            [(link.label, link.clicks, link.automated) for link in report.links],
            title="Clicks per link (people; automated in the lighter shade)",
        )
        gauges = charts.thresholds(
            [
                charts.Gauge("Complaints", report.complaint_rate, COMPLAINT_WARN, COMPLAINT_ALARM),
                charts.Gauge("Hard bounces", report.hard_bounce_rate, HARD_BOUNCE_WARN),
            ],
            title="Bounces and complaints against the mailbox providers' thresholds",
        )
        return ctx.page(
            "issue.html",
            request,
            report=report,
            steps=steps,
            deliveries_chart=deliveries_chart,
            clicks_chart=clicks_chart,
            gauges=gauges,
            complaint_level=complaint_level(report.complaint_rate).value,
            bounce_level=bounce_level(report.hard_bounce_rate).value,
            thresholds={
                "complaint_warn": COMPLAINT_WARN,
                "complaint_alarm": COMPLAINT_ALARM,
                "bounce_warn": HARD_BOUNCE_WARN,
            },
            opens_note=OPENS_NOTE,
        )

    # --- growth -------------------------------------------------------------------------------

    async def growth_page(request: Request) -> Response:
        lists = allowed(request)

        def read() -> tuple[list[Any], Any, Any]:
            with ctx.engine.connect() as conn:
                visible = visible_lists(conn, lists)
            wanted = request.query_params.get("list") or ctx.settings.publication.default_list
            chosen = next((v for v in visible if v[1] == wanted), visible[0] if visible else None)
            if chosen is None:
                return visible, None, []
            today = datetime.now(UTC).date()
            tz = ctx.settings.publication.timezone
            return (
                visible,
                chosen,
                list_growth(ctx.engine, chosen[0], weeks=12, today=today, timezone=tz),
            )

        visible, chosen, weeks = await run_in_threadpool(read)
        chart = charts.weeks(
            [
                (
                    w.start.strftime("%d %b"),
                    w.counts["confirmed"],
                    [w.counts["left"], w.counts["bounced"], w.counts["complained"]],
                )
                for w in weeks
            ],
            title="Confirmed (up) and lost (down: left, bounced, complained), week by week",
            losses=("left", "bounced", "complained"),
        )
        return ctx.page(
            "growth.html",
            request,
            lists=visible,
            chosen=chosen,
            weeks=weeks,
            kinds=GROWTH_KINDS,
            chart=chart,
        )

    # --- people -------------------------------------------------------------------------------

    async def people_page(request: Request) -> Response:
        query = request.query_params.get("q", "")[:320]
        lists = allowed(request)

        def read() -> list[tuple[str, str, str | None]]:
            with ctx.engine.connect() as conn:
                return find_people(conn, query, lists)

        found = await run_in_threadpool(read) if query.strip() else []
        return ctx.page(
            "subscribers.html",
            request,
            query=query,
            found=found,
            done=request.query_params.get("done"),
        )

    def load_person(request: Request) -> Subscriber:
        lists = allowed(request)
        with ctx.engine.connect() as conn:
            person = find_by_uid(conn, str(request.path_params["uid"])[:64])
            if person is None or not may_see_person(conn, person.id, lists):
                raise _not_found()
        return person

    async def person_page(request: Request) -> Response:
        lists = allowed(request)

        def read() -> dict[str, Any]:
            person = load_person(request)
            with ctx.engine.connect() as conn:
                return {
                    "person": person,
                    "subscriptions": [
                        s for s in person.subscriptions if lists is None or s.list_slug in lists
                    ],
                    "suppressed": suppression_reason(conn, person.email_normalized),
                    "deliveries": person_deliveries(conn, person.id, lists),
                    "hits": subscriber_hits(conn, person.id),
                    "unsubscribes": person_unsubscribes(conn, person.uid),
                }

        found = await run_in_threadpool(read)
        return ctx.page("subscriber.html", request, actions=ACTIONS, **found)

    def check_action(request: Request) -> tuple[str, Subscriber]:
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise _not_found()
        person = load_person(request)
        if action != "unsubscribe" and not session_of(request).editor.everything:
            # suppressing or erasing reaches every list: only an editor of all of them may
            raise HTTPException(403, "your account covers some lists only")
        return action, person

    def list_choice(request: Request, person: Subscriber, slug: str | None) -> Any:
        lists = allowed(request)
        for sub in person.active_subscriptions:
            if sub.list_slug == slug and (lists is None or slug in lists):
                return sub
        return None

    async def confirm_page(request: Request) -> Response:
        action, person = await run_in_threadpool(check_action, request)
        chosen = None
        if action == "unsubscribe":
            chosen = list_choice(request, person, request.query_params.get("list"))
            if chosen is None:
                raise _not_found()
        return ctx.page(
            "confirm.html",
            request,
            action=action,
            title=ACTIONS[action],
            person=person,
            chosen=chosen,
        )

    async def act(request: Request) -> Response:
        form = await ctx.form(request)
        action, person = await run_in_threadpool(check_action, request)
        if form.get("confirm") != "yes":
            # the second step was skipped: show it instead of acting
            return RedirectResponse(request.url.path + _query(form.get("list")), status_code=303)
        editor = session_of(request).editor
        chosen = None
        if action == "unsubscribe":
            chosen = list_choice(request, person, str(form.get("list") or ""))
            if chosen is None:
                raise _not_found()

        def work() -> None:
            with ctx.engine.begin() as conn:
                if chosen is not None:
                    unsubscribe(conn, person.id, chosen.list_id)
                elif action == "suppress":
                    suppress(
                        conn,
                        person.email_normalized,
                        SuppressionReason.UNSUBSCRIBED,
                        f"suppressed by {editor.email} in the dashboard",
                    )
                else:
                    erase(conn, person.email_normalized)

        await run_in_threadpool(work)
        if action == "erase":
            return RedirectResponse(PEOPLE + "?done=erased", status_code=303)
        return RedirectResponse(urls.path(PERSON, uid=person.uid), status_code=303)

    return [
        Route(ISSUES, issues_page, methods=["GET"], name="admin_issues"),
        Route(EVENTS, events, methods=["GET"], name="admin_events"),
        Route(ISSUE, issue_page, methods=["GET"], name="admin_issue"),
        Route(GROWTH, growth_page, methods=["GET"], name="admin_growth"),
        Route(PEOPLE, people_page, methods=["GET"], name="admin_people"),
        Route(PERSON, person_page, methods=["GET"], name="admin_person"),
        Route(ACTION, confirm_page, methods=["GET"], name="admin_confirm"),
        Route(ACTION, act, methods=["POST"], name="admin_act"),
    ]


def _query(list_slug: object) -> str:
    return f"?list={quote(str(list_slug), safe='')}" if list_slug else ""


def _final_progress(
    ctx: AdminContext, issue_id: int, lists: tuple[str, ...] | None
) -> dict[str, Any] | None:
    with ctx.engine.connect() as conn:
        for send in sends(conn, lists, limit=200):
            if send.id == issue_id:
                return send.as_progress()
    return None
