"""Property tests: no front matter and no body text can crash the parser or the renderers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.checks import check_issue
from newsletter.config import Settings, load_settings
from newsletter.issues import FRONT_MATTER_KEYS, parse_issue
from newsletter.plaintext import WIDTH
from newsletter.rendering import Renderer
from tests.conftest import TEST_SECRET, write_config

PATH = Path("issues/2026-11-20-property.md")

# Pieces of the issue syntax, so generated bodies hit the block parser's corners often.
FRAGMENTS = [
    "## ",
    "# ",
    "### ",
    "\n",
    "\n\n",
    "::: related ",
    "::: figure ",
    '::: figure credit="x"',
    "::: spotlight Heading",
    ':::: spotlight H label="L"',
    "::: cta",
    "::: nonsense",
    ":::",
    "::::",
    "- ",
    "1. ",
    "> ",
    "— ",
    "    ",
    "![alt](images/market.png)",
    '![alt](images/x.png "cap")',
    "![](",
    "[t](https://a.example/p)",
    "[t](/local)",
    "[t](javascript:x)",
    "](",
    "<https://a.example>",
    "*",
    "**",
    "`",
    "~~",
    "---",
    "```",
    "&amp;",
    "<b>",
    "%%UNSUBSCRIBE_URL%%",
    "\x00",
    "\r\n",
    "\u2028",
]

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
yaml_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
front_matter = st.dictionaries(
    st.sampled_from([*FRONT_MATTER_KEYS, "src", "alt"]) | st.text(max_size=8),
    yaml_values,
    max_size=10,
)
bodies = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=40).map("".join)
valid_front = (
    "---\ntitle: Property issue\ndate: 2026-11-20\nauthors: [Ana]\n"
    "headlines: [One, Two, Three]\n---\n"
)


@pytest.fixture(scope="module")
def prop_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("property")
    (root / "issues").mkdir()
    path = write_config(root, database_url=f"sqlite:///{root / 'n.db'}")
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})


@pytest.fixture(scope="module")
def renderer(prop_settings: Settings) -> Renderer:
    return Renderer(prop_settings)


def check_result(text: str, settings: Settings) -> Any:
    result = parse_issue(text, path=PATH, settings=settings)
    last_line = text.count("\n") + text.count("\r") + 2
    for problem in result.problems:
        assert 1 <= problem.line <= last_line, problem
        assert problem.message
    if result.errors:
        assert result.issue is None
    else:
        assert result.issue is not None
    return result.issue


def check_text(text: str) -> None:
    for line in text.split("\n"):
        if len(line) > WIDTH:
            # only one unbreakable word (a URL) may stick out, after its list or quote marker
            assert len(line.split()) <= 2, line


PROPERTY = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY
@given(front=front_matter, body=bodies)
def test_any_front_matter_parses_or_reports(
    prop_settings: Settings, front: dict[str, Any], body: str
) -> None:
    text = "---\n" + yaml.safe_dump(front, allow_unicode=True) + "---\n" + body
    check_result(text, prop_settings)


@PROPERTY
@given(raw=st.text(max_size=200), body=bodies)
def test_any_text_between_the_fences_parses_or_reports(
    prop_settings: Settings, raw: str, body: str
) -> None:
    check_result("---\n" + raw + "\n---\n" + body, prop_settings)


@PROPERTY
@given(text=st.text(max_size=300))
def test_any_file_at_all(prop_settings: Settings, text: str) -> None:
    check_result(text, prop_settings)


@PROPERTY
@given(body=bodies)
def test_any_body_parses_and_renders_as_text(
    prop_settings: Settings, renderer: Renderer, body: str
) -> None:
    issue = check_result(valid_front + "Intro.\n\n" + body, prop_settings)
    if issue is not None:
        check_text(renderer.render_text(issue))


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_any_body_that_parses_renders_as_html(
    prop_settings: Settings, renderer: Renderer, body: str
) -> None:
    issue = check_result(valid_front + "Intro.\n\n" + body, prop_settings)
    if issue is not None:
        rendered = renderer.render(issue)
        assert "%%UNSUBSCRIBE_URL%%" in rendered.html
        assert "<script" not in rendered.html.lower()


any_front = st.just(valid_front) | front_matter.map(
    lambda front: "---\n" + yaml.safe_dump(front, allow_unicode=True) + "---\n"
)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(front=any_front, body=bodies)
def test_check_never_raises(prop_settings: Settings, front: str, body: str) -> None:
    path = prop_settings.issues_dir / "2026-11-20-property.md"
    path.write_text(front + body, "utf-8")
    for problem in check_issue(path, prop_settings):
        assert str(problem).startswith(f"{path}:{problem.line}: ")
