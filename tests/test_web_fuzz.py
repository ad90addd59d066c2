"""Property: random bytes in the path, the query and the body of a request to any route of the
public app, GET or POST, never make a 5xx (issue 15).

Through the conftest ``client`` (SQLite and PostgreSQL, the real SMTP fixture behind it);
server exceptions are raised into the test, so hypothesis shrinks to the failing request.
"""

from __future__ import annotations

import re
from urllib.parse import quote_from_bytes

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from tests.conftest import FakeClock

BASE = "https://news.test.example"
SETTINGS = hypothesis_settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CONTENT_TYPES = [
    None,
    "application/x-www-form-urlencoded",
    "application/json",
    "application/json; charset=latin-1",
    "multipart/form-data; boundary=xyz",
    "multipart/form-data",
    "text/plain",
    "application/x-www-form-urlencoded; charset=nonesuch",
]


def templates(client: TestClient) -> list[str]:
    """Every route's path, and a path under every mount."""
    found = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route):
            found.append(route.path)
        elif isinstance(route, Mount):
            found.append(route.path + "/{file}")
    return found


segments = st.binary(max_size=40).map(lambda b: quote_from_bytes(b, safe=""))
# percent signs pass through unencoded: malformed escapes (%zz, %ED alone) are part of the game
queries = st.binary(max_size=80).map(lambda b: quote_from_bytes(b, safe="=&%+"))


@SETTINGS
@given(data=st.data(), body=st.binary(max_size=3000), content_type=st.sampled_from(CONTENT_TYPES))
def test_random_requests_never_make_a_server_error(
    client: TestClient,
    clock: FakeClock,
    data: st.DataObject,
    body: bytes,
    content_type: str | None,
) -> None:
    clock.now += 3600  # rate limits forgotten: every example reaches the handler
    template = data.draw(st.sampled_from(templates(client)), label="route")
    path = re.sub(r"\{[^}]+\}", lambda _: data.draw(segments), template)
    query = data.draw(queries, label="query")
    method = data.draw(st.sampled_from(["GET", "POST"]), label="method")
    headers = {"content-type": content_type} if content_type is not None else {}
    url = path + ("?" + query if query else "")
    response = client.request(
        method, url, content=body if method == "POST" else None, headers=headers
    )  # type: ignore[arg-type]
    assert response.status_code < 500, (method, url, response.status_code, response.text[:300])


@SETTINGS
@given(junk=st.binary(min_size=1, max_size=200))
def test_random_paths_under_every_prefix_never_make_a_server_error(
    client: TestClient, clock: FakeClock, junk: bytes
) -> None:
    clock.now += 3600
    tail = quote_from_bytes(junk, safe="/%")
    for prefix in ("/", "/archive/", "/images/", "/images/_derived/", "/admin/", "/unsubscribe/"):
        for method in ("GET", "POST"):
            response = client.request(method, prefix + tail)
            assert response.status_code < 500, (method, prefix + tail, response.status_code)
