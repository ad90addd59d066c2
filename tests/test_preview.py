"""The editors' preview through the real app (TestClient): pages, problems, images, test sends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from newsletter.config import Settings, load_settings
from newsletter.web.preview import create_preview_app
from tests.conftest import TEST_SECRET, write_config
from tests.smtpd import SMTPServer

ISSUE = """---
title: "Fish & <chips> week"
date: 2026-11-27
authors: [Ann Editor]
status: ready
hero:
  src: images/hero-river.png
  alt: The river at the weir
headlines:
  - The river is up
  - The bridge is shut
  - The fair is on
---

Intro paragraph with a [link](https://example.org/a).

## The river

The river rose by a metre on Tuesday, said <b>nobody</b>.
"""

# front matter that is not YAML: the preview must show where, not a traceback
BROKEN = """---
title: "Unclosed
date: 2026-12-04
---

## Section

Text.
"""

NAME = "2026-11-27-preview-test"


def load(project: Path) -> Settings:
    return load_settings(
        project / "newsletter.toml", environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET}
    )


def local_client(app: Starlette) -> TestClient:
    """A client that addresses the preview the way the editor's browser does."""
    return TestClient(app, base_url="http://127.0.0.1:8001")


@pytest.fixture
def issue_file(project: Path, settings: Settings) -> Path:
    path = project / "issues" / f"{NAME}.md"
    path.write_text(ISSUE, encoding="utf-8")
    return path


@pytest.fixture
def client(settings: Settings, issue_file: Path) -> TestClient:
    return local_client(create_preview_app(settings, watch_files=False))


def test_index_lists_every_issue_with_date_status_and_check(
    client: TestClient, project: Path
) -> None:
    (project / "issues" / "2026-12-04-broken.md").write_text(BROKEN, encoding="utf-8")
    page = client.get("/")
    assert page.status_code == 200
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r'<tr data-issue="([^"]+)">(.*?)</tr>', page.text, re.DOTALL)
    }
    samples = [p.stem for p in (project / "issues").glob("*.md")]
    assert set(rows) == set(samples)
    assert "2026-11-27" in rows[NAME]
    assert "ready" in rows[NAME]
    assert "passes" in rows[NAME]
    assert "Fish &amp; &lt;chips&gt; week" in rows[NAME]
    assert "fails" in rows["2026-12-04-broken"]
    assert "unreadable" in rows["2026-12-04-broken"]
    # newest file name first
    assert list(rows) == sorted(rows, reverse=True)


def test_issue_page_shows_both_widths_text_headers_and_eml(client: TestClient) -> None:
    page = client.get(f"/issues/{NAME}")
    assert page.status_code == 200
    body = page.text
    assert f'src="/issues/{NAME}/email" width="640"' in body
    assert f'src="/issues/{NAME}/email" width="375"' in body
    assert '<pre class="text" id="plain-text">' in body
    assert "The river rose by a metre on Tuesday" in body
    # headers of the message a subscriber would get
    assert "<th>List-Unsubscribe-Post</th><td>List-Unsubscribe=One-Click</td>" in body
    assert "<th>List-Id</th>" in body
    assert "Content-Type: multipart/alternative" in body
    assert "passes" in body
    # the issue's own text is escaped everywhere on the page
    assert "<chips>" not in body
    assert "<b>nobody</b>" not in body.split('id="plain-text"')[1].split("</pre>")[0]
    assert "script-src 'nonce-" in page.headers["content-security-policy"]


def test_email_frame_uses_local_images(client: TestClient, settings: Settings) -> None:
    html = client.get(f"/issues/{NAME}/email").text
    # the resized copy the email will link, served by the preview itself
    match = re.search(r'src="(/images/_derived/hero-river-1200w-[0-9a-f]+\.png)"', html)
    assert match, html
    assert settings.publication.base_url + "/images/" not in html
    for path in (match.group(1), "/images/hero-river.png"):
        image = client.get(path)
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/images/_derived/../hero-river.png").status_code in (200, 404)
    assert client.get("/images/_derived/%2e%2e/%2e%2e/newsletter.toml").status_code == 404


def test_images_outside_the_folder_are_not_served(client: TestClient) -> None:
    for path in ("/images/../2026-11-27-preview-test.md", "/images/%2e%2e/x.md", "/images/nope"):
        assert client.get(path).status_code == 404, path


def test_raw_message_downloads(client: TestClient) -> None:
    response = client.get(f"/issues/{NAME}/message.eml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("message/rfc822")
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in response.content


def test_broken_issue_shows_its_problems_not_a_traceback(client: TestClient, project: Path) -> None:
    (project / "issues" / "2026-12-04-broken.md").write_text(BROKEN, encoding="utf-8")
    page = client.get("/issues/2026-12-04-broken")
    assert page.status_code == 200
    assert "fails" in page.text
    assert re.search(
        r'<li class="error"><span class="sev">error</span> <span class="line">line \d+', page.text
    )
    assert "Traceback" not in page.text
    assert "<iframe" not in page.text
    frame = client.get("/issues/2026-12-04-broken/email")
    assert "does not render yet" in frame.text
    assert client.get("/issues/2026-12-04-broken/message.eml").status_code == 409


def test_unknown_issue_is_404(client: TestClient) -> None:
    assert client.get("/issues/nope").status_code == 404
    assert client.get("/issues/..%2Fnewsletter").status_code == 404


def test_editing_the_file_shows_on_the_next_request(client: TestClient, issue_file: Path) -> None:
    assert "Chips again" not in client.get(f"/issues/{NAME}").text
    issue_file.write_text(ISSUE.replace("Fish & <chips> week", "Chips again"), encoding="utf-8")
    assert "Chips again" in client.get(f"/issues/{NAME}").text


def test_config_change_reloads_settings_and_a_bad_one_is_shown(
    settings: Settings, project: Path, issue_file: Path
) -> None:
    config = project / "newsletter.toml"
    app = create_preview_app(settings, reload_settings=lambda: load(project), watch_files=False)
    client = local_client(app)
    state = app.state.preview.state
    config.write_text(
        config.read_text().replace('name = "The Test Weekly"', 'name = "Renamed Weekly"', 1)
    )
    state.files_changed({config.resolve()})
    assert "Renamed Weekly" in client.get(f"/issues/{NAME}").text

    config.write_text(config.read_text() + "\n[nonsense\n")
    state.files_changed({config.resolve()})
    page = client.get(f"/issues/{NAME}").text
    assert 'id="config-error"' in page
    assert "not valid TOML" in page
    assert "Renamed Weekly" in page  # still previewing with the last good settings


def test_send_me_a_test_goes_to_the_editor(
    project: Path, tmp_path: Path, smtpd: SMTPServer, issue_file: Path
) -> None:
    write_config(project, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", smtp_url=smtpd.url)
    client = local_client(create_preview_app(load(project), watch_files=False))
    page = client.get(f"/issues/{NAME}").text
    token = re.search(r'name="form_token" value="([^"]+)"', page)
    assert token is not None

    response = client.post(f"/issues/{NAME}/send-test", data={"form_token": token.group(1)})
    assert response.status_code == 200  # after the redirect
    assert "Sent a test of" in response.text
    assert "editor@test.example" in response.text
    assert len(smtpd.handler.messages) == 1
    received = smtpd.handler.messages[0]
    assert received.rcpt_tos == ["editor@test.example"]
    message = received.message
    assert message["Subject"].startswith("[TEST] ")
    assert "Fish & <chips> week" in message["Subject"]
    html = message.get_body(("html",))
    assert html is not None
    # a real inbox gets the public image URLs, not the preview's
    assert "https://news.test.example/images/_derived/hero-river-1200w-" in html.get_content()


def test_send_me_a_test_needs_the_page_token(
    project: Path, tmp_path: Path, smtpd: SMTPServer, issue_file: Path
) -> None:
    write_config(project, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", smtp_url=smtpd.url)
    client = local_client(create_preview_app(load(project), watch_files=False))
    response = client.post(f"/issues/{NAME}/send-test", data={"form_token": "guess"})
    assert response.status_code == 403
    assert smtpd.handler.messages == []


def test_send_me_a_test_reports_a_refusal(
    project: Path, tmp_path: Path, smtpd: SMTPServer, issue_file: Path
) -> None:
    write_config(project, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", smtp_url=smtpd.url)
    smtpd.handler.faults.rcpt["editor@test.example"] = ["550 5.1.1 no such user"]
    client = local_client(create_preview_app(load(project), watch_files=False))
    page = client.get(f"/issues/{NAME}").text
    token = re.search(r'name="form_token" value="([^"]+)"', page)
    assert token is not None
    response = client.post(f"/issues/{NAME}/send-test", data={"form_token": token.group(1)})
    assert 'class="banner error"' in response.text
    assert "The test was not sent" in response.text
    assert "550" in response.text


def test_send_me_a_test_when_the_relay_is_down(client: TestClient) -> None:
    # the settings fixture points at smtp://127.0.0.1:1, where nothing listens
    page = client.get(f"/issues/{NAME}").text
    token = re.search(r'name="form_token" value="([^"]+)"', page)
    assert token is not None
    response = client.post(f"/issues/{NAME}/send-test", data={"form_token": token.group(1)})
    assert response.status_code == 200
    assert "cannot reach the SMTP server" in response.text


def test_without_an_editor_address_the_button_says_what_to_set(
    project: Path, tmp_path: Path, smtpd: SMTPServer, issue_file: Path
) -> None:
    config = write_config(
        project, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", smtp_url=smtpd.url
    )
    config.write_text(config.read_text().replace('editor_email = "editor@test.example"\n', ""))
    client = local_client(create_preview_app(load(project), watch_files=False))
    page = client.get(f"/issues/{NAME}").text
    assert '<button type="submit" id="send-test" disabled>' in page
    token = re.search(r'name="form_token" value="([^"]+)"', page)
    assert token is not None
    response = client.post(f"/issues/{NAME}/send-test", data={"form_token": token.group(1)})
    assert "Set publication.editor_email" in response.text
    assert smtpd.handler.messages == []


def test_other_host_names_are_refused(settings: Settings, issue_file: Path) -> None:
    # a page elsewhere that rebinds its own name to 127.0.0.1 must not read unsent issues
    app = create_preview_app(settings, watch_files=False)
    assert TestClient(app, base_url="http://evil.example:8001").get("/").status_code == 400
    assert TestClient(app, base_url="http://localhost:8001").get("/").status_code == 200
