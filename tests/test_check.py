"""``newsletter check``: one broken file per mistake, each reported at its line, never a crash."""

from __future__ import annotations

import email
import email.policy
import math
import random
from email.message import EmailMessage
from pathlib import Path

import pytest
from PIL import Image as PILImage

from newsletter.checks import (
    GMAIL_CLIP_BYTES,
    IMAGE_WARNING_BYTES,
    SIZE_WARNING_BYTES,
    Problem,
    Severity,
    check_issue,
    email_size,
    image_width,
)
from newsletter.config import Settings
from newsletter.issues import load_issue
from newsletter.rendering import Renderer
from tests.conftest import run_cli

GOOD_FRONT = """---
title: Test issue
date: 2026-11-20
authors: [Ana Brook]
status: ready
---
"""
GOOD_BODY = "## News\n\nSomething happened.\n"

# (case id, file text, line of the problem, words the message must contain)
BROKEN = [
    ("no-front-matter", "## News\n\nText.\n", 1, "must start with front matter"),
    ("unclosed-front-matter", "---\ntitle: x\n\n## News\n", 1, "never closed"),
    ("bad-yaml", "---\ntitle: [unclosed\ndate: 2026-11-20\n---\n" + GOOD_BODY, 3, "not valid YAML"),
    ("front-matter-not-mapping", "---\n- a\n- b\n---\n" + GOOD_BODY, 2, "'key: value'"),
    (
        "unknown-key",
        GOOD_FRONT.replace("status: ready", "status: ready\nauthor: Ana") + GOOD_BODY,
        6,
        "unknown front matter key 'author' (did you mean 'authors'?)",
    ),
    (
        "missing-key",
        GOOD_FRONT.replace("title: Test issue\n", "") + GOOD_BODY,
        2,
        "missing the required key 'title'",
    ),
    (
        "bad-date",
        GOOD_FRONT.replace("2026-11-20", "2026-11-31") + GOOD_BODY,
        3,
        "bad date '2026-11-31'",
    ),
    (
        "date-not-iso",
        GOOD_FRONT.replace("2026-11-20", "20 November 2026") + GOOD_BODY,
        3,
        "write it as YYYY-MM-DD",
    ),
    (
        "bad-send-at",
        GOOD_FRONT.replace("status: ready", "status: ready\nsend_at: friday 1pm") + GOOD_BODY,
        6,
        "bad send_at",
    ),
    (
        "bad-status",
        GOOD_FRONT.replace("status: ready", "status: sent") + GOOD_BODY,
        5,
        "status 'sent' is not one of draft, ready",
    ),
    (
        "unknown-list",
        GOOD_FRONT.replace("status: ready", "status: ready\nlist: busines") + GOOD_BODY,
        6,
        "no list named 'busines'",
    ),
    (
        "hero-without-alt",
        GOOD_FRONT.replace("status: ready", "status: ready\nhero:\n  src: images/market.png")
        + GOOD_BODY,
        6,
        "hero image has no alt text",
    ),
    (
        "hero-unknown-key",
        GOOD_FRONT.replace(
            "status: ready",
            "status: ready\nhero:\n  src: images/market.png\n  alt: x\n  credits: y",
        )
        + GOOD_BODY,
        9,
        "unknown hero key 'credits' (did you mean 'credit'?)",
    ),
    ("image-without-alt", GOOD_FRONT + "## News\n\n![](images/market.png)\n", 9, "no alt text"),
    (
        "missing-image-file",
        GOOD_FRONT + "## News\n\n![A market](images/nope.png)\n",
        9,
        "image 'images/nope.png' not found",
    ),
    (
        "image-name-too-long",
        GOOD_FRONT + "## News\n\n![A market](images/" + "x" * 300 + ".png)\n",
        9,
        "not found",
    ),
    (
        "image-outside-issues",
        GOOD_FRONT + "## News\n\n![A file](../secret.png)\n",
        9,
        "outside the issues folder",
    ),
    (
        "malformed-url",
        GOOD_FRONT + "## News\n\nSee [this](htps//millbrook.example).\n",
        9,
        "malformed link 'htps//millbrook.example'",
    ),
    (
        "javascript-url",
        GOOD_FRONT + "## News\n\nSee [this](javascript:alert(1)).\n",
        9,
        "malformed link",
    ),
    ("empty-section", GOOD_FRONT + "## Empty\n\n## News\n\nText.\n", 7, "section 'Empty' is empty"),
    (
        "unclosed-block",
        GOOD_FRONT + "## News\n\n::: related\n- [A](https://a.example/) — a\n",
        9,
        "'::: related' is never closed",
    ),
    (
        "unknown-block",
        GOOD_FRONT + "## News\n\n::: relatd\n- [A](https://a.example/) — a\n:::\n",
        9,
        "unknown block '::: relatd' (did you mean 'related'?)",
    ),
    (
        "stray-closer",
        GOOD_FRONT + "## News\n\nText.\n\n:::\n",
        11,
        "':::' closes no block",
    ),
    (
        "related-not-a-list",
        GOOD_FRONT + "## News\n\n::: related\nJust a paragraph.\n:::\n",
        9,
        "a related block holds only a list",
    ),
    (
        "related-without-link",
        GOOD_FRONT + "## News\n\n::: related\n- Title — teaser\n:::\n",
        10,
        "a related story starts with its link",
    ),
    (
        "cta-without-button",
        GOOD_FRONT + "## News\n\nText.\n\n::: cta\nGive us money.\n:::\n",
        12,
        "ends with its button",
    ),
    (
        "spotlight-without-heading",
        GOOD_FRONT + "## News\n\nText.\n\n::: spotlight\nWords.\n:::\n",
        11,
        "spotlight needs a heading",
    ),
    (
        "two-ctas",
        GOOD_FRONT
        + "## News\n\nText.\n\n::: cta\n[A](https://a.example/)\n:::\n\n"
        + "::: cta\n[B](https://b.example/)\n:::\n",
        15,
        "only one call to action",
    ),
    ("no-body", GOOD_FRONT, 7, "no body"),
    (
        "duplicate-key",
        GOOD_FRONT.replace("status: ready", "status: ready\ntitle: Again") + GOOD_BODY,
        6,
        "duplicate key 'title'",
    ),
    (
        "bad-slug",
        GOOD_FRONT + GOOD_BODY,
        1,
        "use only lowercase letters, digits and hyphens",
    ),
]


def write(settings: Settings, text: str, name: str = "2026-11-20-test.md") -> Path:
    path = settings.issues_dir / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "line", "words"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_each_mistake_is_reported_at_its_line(
    settings: Settings, text: str, line: int, words: str, request: pytest.FixtureRequest
) -> None:
    name = "2026-11-20-Bad Slug.md" if "bad-slug" in request.node.name else "2026-11-20-test.md"
    path = write(settings, text, name)
    problems = check_issue(path, settings)
    errors = [p for p in problems if p.severity is Severity.ERROR]
    matching = [p for p in errors if words in p.message]
    assert matching, f"no error containing {words!r} in {[str(p) for p in problems]}"
    assert matching[0].line == line
    assert str(matching[0]).startswith(f"{path}:{line}: error: ")


def test_good_issue_has_no_problems(settings: Settings) -> None:
    assert check_issue(write(settings, GOOD_FRONT + GOOD_BODY), settings) == []


def test_samples_are_clean(settings: Settings) -> None:
    for path in sorted(settings.issues_dir.glob("*.md")):
        assert check_issue(path, settings) == [], path


def test_all_problems_reported_at_once(settings: Settings) -> None:
    text = (
        GOOD_FRONT.replace("2026-11-20", "2026-02-30").replace("status: ready", "statsu: ready")
        + "## Empty\n\n## News\n\n![](images/market.png) and [x](ftp:/x)\n"
    )
    problems = check_issue(write(settings, text), settings)
    assert len([p for p in problems if p.severity is Severity.ERROR]) >= 4
    assert [p.line for p in problems] == sorted(p.line for p in problems)


def test_warnings(settings: Settings) -> None:
    front = GOOD_FRONT.replace("2026-11-20", "2026-11-21").replace(
        "status: ready", "status: ready\nheadlines: [Only one]"
    )
    text = front + "## News\n\nDo not type %%UNSUBSCRIBE_URL%% here.\n\n### Small heading\n"
    problems = check_issue(write(settings, text), settings)
    assert all(p.severity is Severity.WARNING for p in problems)
    messages = " | ".join(p.message for p in problems)
    assert "does not match the file name" in messages
    assert "1 headlines" in messages
    assert "%%UNSUBSCRIBE_URL%%" in messages
    assert "only '##' headings start sections" in messages


def test_size_warning_and_clip_error(settings: Settings) -> None:
    paragraph = "Words " * 150 + "\n\n"
    renderer = Renderer(settings)

    def size(paragraphs: int) -> int:
        text = GOOD_FRONT + "## News\n\n" + paragraph * paragraphs
        issue = load_issue(write(settings, text), settings)
        return email_size(renderer.render_html(issue))

    base, per = size(1), (size(11) - size(1)) / 10
    near_count = math.ceil((SIZE_WARNING_BYTES + 2048 - base) / per) + 1
    over_count = math.ceil((GMAIL_CLIP_BYTES + 2048 - base) / per) + 1
    near_text = GOOD_FRONT + "## News\n\n" + paragraph * near_count
    near = check_issue(write(settings, near_text), settings)
    assert [p.severity for p in near] == [Severity.WARNING]
    assert "close to Gmail's 102 KB clipping limit" in near[0].message
    over_text = GOOD_FRONT + "## News\n\n" + paragraph * over_count
    over = check_issue(write(settings, over_text), settings)
    assert [p.severity for p in over] == [Severity.ERROR]
    assert "Gmail clips" in over[0].message


def test_email_size_counts_a_real_link() -> None:
    html = "<a href='%%UNSUBSCRIBE_URL%%'>x</a>"
    assert email_size(html) > len(html)
    assert GMAIL_CLIP_BYTES == 104448


def test_unreadable_file_is_a_problem_not_an_exception(settings: Settings, tmp_path: Path) -> None:
    problems = check_issue(tmp_path / "nope.md", settings)
    assert problems == [Problem(tmp_path / "nope.md", 1, Severity.ERROR, "no such file")]


# -- the commands ---------------------------------------------------------------------------


def test_check_command_exit_status(settings: Settings) -> None:
    good = write(settings, GOOD_FRONT + GOOD_BODY, "2026-11-20-good.md")
    bad = write(settings, GOOD_FRONT + "## Empty\n", "2026-11-20-bad.md")
    result = run_cli(settings.source, "check", str(good))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "1 file checked: 0 error(s), 0 warning(s)" in result.stderr
    result = run_cli(settings.source, "check", str(good), str(bad))
    assert result.exit_code == 1
    assert f"{bad}:7: error: section 'Empty' is empty" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_check_command_defaults_to_all_issues(settings: Settings) -> None:
    result = run_cli(settings.source, "check")
    count = len(list(settings.issues_dir.glob("*.md")))
    assert result.exit_code == 0
    assert f"{count} files checked: 0 error(s)" in result.stderr


def test_check_bad_yaml_is_a_message_not_a_traceback(settings: Settings) -> None:
    path = write(settings, "---\ntitle: 'unterminated\n---\n## A\n\nx\n")
    result = run_cli(settings.source, "check", str(path))
    assert result.exit_code == 1
    assert "not valid YAML" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_build_writes_html_text_and_eml(settings: Settings, tmp_path: Path) -> None:
    source = settings.issues_dir / "2026-11-20-flood-barrier-vote.md"
    out_dir = tmp_path / "out"
    result = run_cli(settings.source, "build", str(source), "-o", str(out_dir))
    assert result.exit_code == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [
        "flood-barrier-vote.eml",
        "flood-barrier-vote.html",
        "flood-barrier-vote.txt",
    ]
    assert f"wrote {out_dir / 'flood-barrier-vote.html'}" in result.stdout
    html = (out_dir / "flood-barrier-vote.html").read_text(encoding="utf-8")
    assert "%%UNSUBSCRIBE_URL%%" in html  # the placeholder is for delivery to fill
    raw = (out_dir / "flood-barrier-vote.eml").read_bytes()
    # the header as a client reads it: plain <URL>s, not RFC 2047 encoded-words
    assert b"\nList-Unsubscribe: <https://news.test.example/unsubscribe/" in raw
    unsubscribe = raw.split(b"\nList-Unsubscribe: ", 1)[1].split(b"\nList-Unsubscribe-Post", 1)[0]
    assert b"=?utf-8?" not in unsubscribe
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == "Sample Reader <reader@example.com>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "news.test.example/unsubscribe/" in str(message["List-Unsubscribe"])
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    assert html_part is not None
    assert text_part is not None
    body = html_part.get_content()
    assert "%%UNSUBSCRIBE_URL%%" not in body
    assert "https://news.test.example/unsubscribe/" in body
    assert "https://news.test.example/unsubscribe/" in text_part.get_content()


def test_build_refuses_a_broken_issue_before_writing(settings: Settings, tmp_path: Path) -> None:
    good = settings.issues_dir / "2026-11-20-flood-barrier-vote.md"
    bad = write(settings, GOOD_FRONT + "## Empty\n", "2026-11-21-bad.md")
    out_dir = tmp_path / "out"
    result = run_cli(settings.source, "build", str(good), str(bad), "-o", str(out_dir))
    assert result.exit_code == 1
    # the same lines as `check`, then why nothing was written
    assert f"{bad}:7: error: section 'Empty' is empty" in result.stderr
    assert "nothing built" in result.stderr
    assert not out_dir.exists()


def test_image_width_from_pillow(tmp_path: Path) -> None:
    for name, fmt, size in (("a.png", "PNG", (1234, 10)), ("a.gif", "GIF", (321, 5)),
                            ("a.jpg", "JPEG", (1600, 8)), ("a.webp", "WEBP", (90, 9))):  # fmt: skip
        PILImage.new("RGB", size, "#336699").save(tmp_path / name, fmt)
        assert image_width(tmp_path / name) == size[0], name
    # a photo taken on its side is as wide as it stands upright
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    PILImage.new("RGB", (400, 300)).save(tmp_path / "side.jpg", "JPEG", exif=exif)
    assert image_width(tmp_path / "side.jpg") == 300
    other = tmp_path / "a.txt"
    other.write_bytes(b"not an image")
    assert image_width(other) is None
    assert image_width(tmp_path / "missing.png") is None


def test_blurry_image_warning(settings: Settings) -> None:
    # keeper.png is 480 px: sharp beside the spotlight text (212 px, needs 424), soft in a
    # section (544 px wide on screen needs 1088)
    text = GOOD_FRONT + "## News\n\n![Ivo Marsh](images/keeper.png)\n"
    (problem,) = check_issue(write(settings, text), settings)
    assert problem.severity is Severity.WARNING
    assert problem.line == 9
    assert "480 px wide but shown 544 px wide" in problem.message
    assert "export it at 1088 px or wider" in problem.message


def test_heavy_image_warning(settings: Settings) -> None:
    # a file no copy can be made of is sent as it is: its weight matters
    heavy = settings.issues_dir / "images" / "heavy.png"
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + (1200).to_bytes(4, "big")
    heavy.write_bytes(header + b"\0" * (450 * 1024))
    text = GOOD_FRONT + "## News\n\n![A heavy picture](images/heavy.png)\n"
    unreadable, weight = check_issue(write(settings, text), settings)
    assert unreadable.severity is weight.severity is Severity.WARNING
    assert "not a picture Pillow can read" in unreadable.message
    assert "is 450 KB and is sent as it is" in weight.message


def test_a_heavy_photo_is_not_a_warning_when_a_copy_is_sent(settings: Settings) -> None:
    photo = settings.issues_dir / "images" / "photo.png"
    noise = random.Random(7).randbytes(1200 * 400 * 3)
    PILImage.frombytes("RGB", (1200, 400), noise).save(photo)
    assert photo.stat().st_size > IMAGE_WARNING_BYTES
    text = GOOD_FRONT + "## News\n\n![Static on a screen](images/photo.png)\n"
    assert check_issue(write(settings, text), settings) == []
