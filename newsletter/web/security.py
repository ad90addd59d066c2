"""The public site's guards: security headers, trusted hosts, form origins, forwarded addresses
and malformed requests.

Each is a small ASGI middleware that :func:`newsletter.web.app.create_app` stacks around every
route, so a page added later is covered without remembering to be. Routes keep the last word
where they know better: a header a route set is never replaced (the dashboard's strict CSP, the
archive's own), and the dashboard keeps its own CSRF token.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter import urls
from newsletter.config import Settings

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The pages are server-rendered HTML with one inline <style>; the archive's issues bring inline
# styles and images that may live on a CDN. No page runs a script or is framed by anyone.
PAGE_CSP = (
    "default-src 'none'; img-src 'self' https: data:; style-src 'unsafe-inline'; "
    "font-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# What a picture is allowed to do when opened on its own: nothing (an SVG may hold a script).
IMAGE_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
HSTS = "max-age=31536000"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# answered whatever the Host: a load balancer's health check asks by the machine's address,
# and nothing in the answer is built from the request
HOST_EXEMPT = frozenset({"/healthz"})


def security_headers(settings: Settings) -> dict[str, str]:
    """The headers every answer gets unless its route set its own."""
    headers = {
        "Content-Security-Policy": PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if urlsplit(settings.publication.base_url).scheme == "https":
        # the site is HTTPS only; a browser that saw it once will not be talked down to HTTP
        headers["Strict-Transport-Security"] = HSTS
    return headers


class SecurityHeaders:
    """Add ``headers`` to every HTTP answer that does not carry them already."""

    def __init__(self, app: ASGIApp, *, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                added = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        await self.app(scope, receive, with_headers)


def host_name(value: str) -> str:
    """The host of a ``Host`` header (port, brackets and a final dot gone), lowercased."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0].rstrip(".") if value.count(":") == 1 else value.rstrip(".")


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """``publication.base_url``'s host, and loopback names for a local run."""
    host = urlsplit(settings.publication.base_url).hostname or ""
    # browsers send an internationalised name as its xn-- form
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    return LOOPBACK_HOSTS | {host.rstrip(".").lower()}


class TrustedHosts:
    """Answer 400 to a request for any other host than ours.

    A Host of the attacker's choosing would otherwise flow into whatever is built from the
    request's URL, and a DNS name pointed at this server could read its pages.
    """

    def __init__(
        self, app: ASGIApp, *, hosts: Iterable[str], exempt: Iterable[str] = HOST_EXEMPT
    ) -> None:
        self.app = app
        self.hosts = frozenset(hosts)
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") not in self.exempt:
            host = Headers(scope=scope).get("host", "")
            if host_name(host) not in self.hosts:
                log.info("refused a request for host %r", host[:100])
                response = PlainTextResponse("unknown host\n", status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``serve.trusted_proxies`` as networks (checked when the settings were loaded)."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("["):  # [2001:db8::1]:443
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # 192.0.2.1:443
        value = value.partition(":")[0]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ForwardedHeaders:
    """The client's address and scheme as a trusted proxy reports them; nobody else's word.

    ``X-Forwarded-For`` is read from the right: each proxy appends the address it was talked
    to from, so the first address that is not one of our proxies is the client. What is left
    of it was written by the client and means nothing. From a peer that is not a trusted
    proxy the headers are ignored: the peer is the client.
    """

    def __init__(self, app: ASGIApp, *, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    def _trusted(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return ip is not None and any(ip in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.trusted:
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        if peer is None or not self._trusted(_address(str(peer[0]))):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        scope = dict(scope)
        chain = ",".join(headers.getlist("x-forwarded-for")).split(",")
        for hop in reversed([h for h in chain if h.strip()]):
            ip = _address(hop)
            if ip is None:
                break  # not an address: our proxy did not write it; stop believing
            if not self._trusted(ip):
                scope["client"] = (str(ip), 0)
                break
        proto = headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto
        await self.app(scope, receive, send)


def allowed_origins(settings: Settings) -> frozenset[str]:
    """``base_url``'s origin and the ``serve.form_origins``, as ``scheme://host[:port]``."""
    return frozenset(
        _origin(value) for value in (settings.publication.base_url, *settings.serve.form_origins)
    )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> str:
    """``scheme://host[:port]`` as a browser serialises it (no default port, no user)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a port that is no number: matches no origin of ours
        return "invalid:"
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    shown = f":{port}" if port is not None and port != _DEFAULT_PORTS.get(scheme) else ""
    return f"{scheme}://{host}{shown}"


def origin_allowed(headers: Headers, origins: frozenset[str]) -> bool:
    """True unless the browser says the form was posted from another site.

    Browsers send ``Origin`` with every POST (``null`` when the page hides where it came
    from); ``Referer`` stands in when ``Origin`` is missing. A request with neither is not a
    browser's cross-site form post (the one thing this defends against), so it passes.
    """
    claimed = headers.get("origin") or headers.get("referer")
    if not claimed:
        return True
    return _origin(claimed) in origins


def _form_path(path: str) -> bool:
    # the forms a person posts from their browser; /unsubscribe checks in its handler, where
    # it can tell a mail client's RFC 8058 one-click POST (always exempt) from the form
    return (
        path == urls.SUBSCRIBE
        or path.startswith(urls.CONFIRM.partition("{")[0])
        or path.startswith(urls.JOIN.partition("{")[0])
    )


class FormOrigins:
    """Refuse (403) a form POST that a browser says came from another site (CSRF)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        origins: frozenset[str],
        applies: Callable[[str], bool] = _form_path,
    ) -> None:
        self.app = app
        self.origins = origins
        self.applies = applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and self.applies(scope["path"])
            and not origin_allowed(Headers(scope=scope), self.origins)
        ):
            await refused_origin()(scope, receive, send)
            return
        await self.app(scope, receive, send)


def refused_origin() -> Response:
    return PlainTextResponse(
        "This form was sent from another site. Please use the form on our own pages.\n",
        status_code=403,
    )


class MalformedRequests:
    """A request the app cannot make sense of gets a 400, not a 500 and a traceback.

    Odd bytes, lone surrogates and absurdly nested JSON surface deep in parsing as
    ``UnicodeError`` or ``RecursionError``; a client that hangs up mid-body is ordinary and
    is logged as such.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            # no URL of ours holds a NUL, and PostgreSQL refuses one in any text it is given
            response = PlainTextResponse("malformed request\n", status_code=400)
            await response(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except ClientDisconnect:
            log.info("client went away before its request was complete: %s", _where(scope))
        except (UnicodeError, RecursionError) as exc:
            log.warning("malformed request to %s: %s", _where(scope), type(exc).__name__)
            if not started:
                response = PlainTextResponse("malformed request\n", status_code=400)
                await response(scope, receive, send)


def _where(scope: Scope) -> str:
    return f"{scope.get('method', '?')} {scope.get('path', '')[:200]!r}"


def slash_redirect(
    scope: Scope, routes: Sequence[BaseRoute], base_url: str
) -> RedirectResponse | None:
    """A redirect to the same path with the trailing slash added or dropped, if that matches.

    Only for a path no route took (a 404 from inside a route or a mount stays a 404). The
    ``Location`` comes from ``publication.base_url``, never from the request's ``Host``.
    """
    root: str = scope.get("root_path", "")
    path: str = scope.get("path", "")
    path = path[len(root) :] if root and path.startswith(root) else path
    if path in ("", "/"):
        return None
    if any(route.matches(scope)[0] is not Match.NONE for route in routes):
        return None
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    moved = {**scope, "path": scope.get("root_path", "") + other}
    if all(route.matches(moved)[0] is Match.NONE for route in routes):
        return None
    target = urls.absolute(base_url, quote(other, safe="/:@!$&'()*+,;=~"))
    query: bytes = scope.get("query_string", b"")
    if query:
        target += "?" + quote(query, safe="&=+%/?:@!$'()*,;~")
    return RedirectResponse(target, status_code=307)


# What /images serves, by file name; anything else there (an .html, a .js) is a 404, so a file
# dropped among the images cannot run on the site's origin.
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    # an SVG can carry script: served with IMAGE_CSP, which sandboxes it when opened directly
    ".svg": "image/svg+xml",
}


class ImageFiles(StaticFiles):
    """Static files restricted to :data:`IMAGE_TYPES`, typed by us and never sniffed."""

    def __init__(self, *, directory: Path, immutable: bool = False) -> None:
        super().__init__(directory=directory, check_dir=False)
        self.immutable = immutable

    async def check_config(self) -> None:
        # the folder may come later (the first `build` makes var/images): until then, 404s
        if self.directory is not None and Path(self.directory).is_dir():
            await super().check_config()

    async def get_response(self, path: str, scope: Scope) -> Response:
        media_type = IMAGE_TYPES.get(PurePosixPath(path).suffix.lower())
        if media_type is None or "\x00" in path:
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        if response.status_code < 400:
            if response.status_code != 304:
                response.headers["content-type"] = media_type
            response.headers["x-content-type-options"] = "nosniff"
            response.headers["content-security-policy"] = IMAGE_CSP
            if self.immutable:
                # the derived copies' names carry a digest of what they were made from
                response.headers["cache-control"] = "public, max-age=31536000, immutable"
        return response
