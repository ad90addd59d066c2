"""The archive and its feed: editor text stays text, and odd characters never break the XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sqlalchemy import Engine
from starlette.testclient import TestClient

from tests.test_archive import add_issue, weekly  # noqa: F401  (fixtures)

ATOM = "{http://www.w3.org/2005/Atom}"


def test_feed_stays_well_formed_xml_whatever_the_issue_holds(
    client: TestClient,
    engine: Engine,
    weekly: int,  # noqa: F811
) -> None:
    # a form feed or a stray control character pasted from a PDF is legal in the issue but not
    # in XML 1.0; one such issue must not break the feed for every reader
    title = 'Flood </title><script>alert(1)</script> & "more" ]]>'
    add_issue(
        engine,
        weekly,
        "odd",
        title,
        1,
        html="<p>page\x0cbreak \x01\x08 and \ufffe, kept: tab\there</p>",
        subject="Subject\x0b with a vertical tab",
    )
    response = client.get("/archive/feed.xml")
    assert response.status_code == 200
    feed = ET.fromstring(response.content)  # raises on malformed XML
    (entry,) = feed.findall(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == title
    content = entry.findtext(f"{ATOM}content")
    assert content is not None
    assert "pagebreak" in content.replace(" ", "") or "page break" in content
    assert "tab\there" in content
    assert b"<script>" not in response.content

    index = client.get("/archive")
    assert "<script>alert(1)" not in index.text
    assert "&lt;script&gt;" in index.text
