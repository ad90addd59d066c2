"""``newsletter check``: one broken file per mistake, each reported at its line, never a crash."""

from __future__ import annotations

import contextlib
import email
import email.policy
import gc
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

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
from newsletter.errors import IssueError, RenderError
from newsletter.images import plan_images
from newsletter.issues import MAX_ISSUE_BYTES, load_issue, parse_issue
from newsletter.rendering import Renderer
from tests.conftest import run_cli

T = TypeVar("T")

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


# -- files that are not issue files -----------------------------------------------------------


def _within(seconds: float, func: Callable[[], T]) -> T:
    """``func()``, failing the test (not hanging it) if it takes longer than ``seconds``."""
    outcome: list[T] = []
    worker = threading.Thread(target=lambda: outcome.append(func()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    return outcome[0]


@pytest.fixture
def fifo(settings: Settings) -> Iterator[Path]:
    path = settings.issues_dir / "2026-11-20-pipe.md"
    os.mkfifo(path)
    yield path
    # a reader still blocked in open() (the bug) gets its writer, and its thread ends
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def test_a_fifo_named_md_is_reported_not_waited_on(settings: Settings, fifo: Path) -> None:
    problems = _within(10, lambda: check_issue(fifo, settings))
    assert [str(p) for p in problems] == [
        f"{fifo}:1: error: is not a regular file (a pipe or a device?)"
    ]
    result = _within(10, lambda: run_cli(settings.source, "build", str(fifo)))
    assert result.exit_code == 1
    assert "is not a regular file" in result.stderr
    # with no file named, every *.md is checked: the pipe among them does not hang it
    result = _within(20, lambda: run_cli(settings.source, "check"))
    assert result.exit_code == 1
    assert f"{fifo.name}:1: error: is not a regular file" in result.stdout


def test_a_link_to_a_device_is_not_read(settings: Settings) -> None:
    link = settings.issues_dir / "2026-11-20-zero.md"
    link.symlink_to("/dev/zero")
    (problem,) = _within(10, lambda: check_issue(link, settings))
    assert problem.message == "is not a regular file (a pipe or a device?)"
    result = _within(10, lambda: run_cli(settings.source, "build", str(link)))
    assert result.exit_code == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_a_file_over_two_megabytes_is_too_large(settings: Settings) -> None:
    path = settings.issues_dir / "2026-11-20-huge.md"
    text = GOOD_FRONT + GOOD_BODY
    path.write_text(text + "x" * (MAX_ISSUE_BYTES + 1 - len(text)), encoding="utf-8")
    (problem,) = check_issue(path, settings)
    assert str(problem).startswith(f"{path}:1: error: too large")
    with pytest.raises(IssueError, match="too large"):
        load_issue(path, settings)
    # one byte less is read (and is then only an email Gmail clips)
    path.write_text(text + "x" * (MAX_ISSUE_BYTES - len(text)), encoding="utf-8")
    assert not any("too large" in p.message for p in check_issue(path, settings))


def test_a_directory_named_md_is_a_problem(settings: Settings) -> None:
    folder = settings.issues_dir / "2026-11-20-folder.md"
    folder.mkdir()
    (problem,) = check_issue(folder, settings)
    assert problem.message == "is a directory, not an issue file"


# -- build says what check says ---------------------------------------------------------------


def test_build_prints_checks_warnings_and_still_builds(settings: Settings, tmp_path: Path) -> None:
    text = GOOD_FRONT.replace("2026-11-20", "2026-11-21") + GOOD_BODY
    path = write(settings, text)
    out_dir = tmp_path / "out"
    result = run_cli(settings.source, "build", str(path), "-o", str(out_dir))
    assert result.exit_code == 0
    assert f"{path}:3: warning: date 2026-11-21 does not match the file name" in result.stderr
    assert (out_dir / "test.html").is_file()


def test_build_refuses_an_issue_gmail_would_clip(settings: Settings, tmp_path: Path) -> None:
    # check said error, build wrote it without a word
    text = GOOD_FRONT + "## News\n\n" + ("Words " * 150 + "\n\n") * 200
    path = write(settings, text)
    errors = [p.message for p in check_issue(path, settings) if p.is_error]
    assert errors[0].startswith("the email is")
    out_dir = tmp_path / "out"
    result = run_cli(settings.source, "build", str(path), "-o", str(out_dir))
    assert result.exit_code == 1
    assert f"{path}:1: error: the email is" in result.stderr
    assert "Gmail clips" in result.stderr
    assert not out_dir.exists()


def test_built_html_is_the_one_check_rendered(settings: Settings, tmp_path: Path) -> None:
    source = settings.issues_dir / "2026-11-20-flood-barrier-vote.md"
    result = run_cli(settings.source, "build", str(source), "-o", str(tmp_path))
    assert result.exit_code == 0
    issue = load_issue(source, settings)
    rendered = Renderer(settings).render(issue, plan_images(issue, settings))
    assert (tmp_path / "flood-barrier-vote.html").read_text(encoding="utf-8") == rendered.html
    assert (tmp_path / "flood-barrier-vote.txt").read_text(encoding="utf-8") == rendered.text


# -- what the text has, the HTML has ---------------------------------------------------------


def test_a_paragraph_near_the_size_cap_reaches_the_html(settings: Settings) -> None:
    paragraph = "START " + "words " * ((MAX_ISSUE_BYTES - 4096) // 6) + "END"
    path = write(settings, GOOD_FRONT + "## News\n\n" + paragraph + "\n")
    errors = [p for p in check_issue(path, settings) if p.is_error]
    # check says why the reader will not see all of it: Gmail clips it
    assert len(errors) == 1
    assert "Gmail clips" in errors[0].message
    rendered = Renderer(settings).render(load_issue(path, settings))
    assert "END" in rendered.text
    assert "START" in rendered.html
    assert "END" in rendered.html


def test_html_that_loses_text_is_a_render_error(settings: Settings) -> None:
    # past the file cap, but the renderer takes issues from elsewhere too: lxml drops a text
    # over 10 MB without a word, and the HTML part lacked what the text part had
    text = GOOD_FRONT + "## News\n\nSTART " + "words " * 1_750_000 + "END\n"
    result = parse_issue(text, path=Path("2026-11-20-test.md"), settings=settings)
    assert result.issue is not None
    renderer = Renderer(settings)
    assert "END" in renderer.render_text(result.issue)
    with pytest.raises(RenderError, match="CSS inlining lost part of the email"):
        renderer.render_html(result.issue)


# -- linear in the size of the issue --------------------------------------------------------


def _parse_seconds(settings: Settings, sections: int) -> float:
    """The least CPU time of three parses of ``sections`` sections all headed "## News"."""
    text = GOOD_FRONT + "".join(f"## News\n\nParagraph {i}.\n\n" for i in range(sections))
    times = []
    for _ in range(3):
        start = time.process_time()
        result = parse_issue(text, path=Path("2026-11-20-x.md"), settings=settings)
        times.append(time.process_time() - start)
        assert result.issue is not None
        assert result.issue.sections[-1].anchor == f"news-{sections - 1}"
    return min(times)


def test_same_named_sections_parse_in_linear_time(settings: Settings) -> None:
    # every "## News" searched news-1, news-2, ... from the start: 20,000 took 20 s
    _parse_seconds(settings, 200)  # warm
    gc.disable()  # collections scan the whole test process's heap: not what is measured
    try:
        small, large = _parse_seconds(settings, 1000), _parse_seconds(settings, 8000)
    finally:
        gc.enable()
    assert large / small < 16, (small, large)  # 8 when linear; it was over 30


def test_anchor_suffixes_skip_taken_ones(settings: Settings) -> None:
    body = (
        "## News\n\nA.\n\n## News {#news-2}\n\nB.\n\n## News\n\nC.\n\n## News\n\nD.\n\n"
        "## News\n\nE.\n\n## Other {#news-5}\n\nF.\n\n## News\n\nG.\n\n## News\n\nH.\n"
    )
    result = parse_issue(GOOD_FRONT + body, path=Path("2026-11-20-x.md"), settings=settings)
    assert result.issue is not None
    anchors = [s.anchor for s in result.issue.sections]
    assert anchors == ["news", "news-2", "news-1", "news-3", "news-4", "news-5", "news-6", "news-7"]
