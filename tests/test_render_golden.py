"""Golden files: the sample issues must render exactly as reviewed in ``tests/golden/``.

After an intended change to templates or rendering, regenerate and review the diff:

    NEWSLETTER_REGEN_GOLDEN=1 pytest tests/test_render_golden.py && git diff tests/golden/
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.images import plan_images
from newsletter.issues import load_issue
from newsletter.rendering import Renderer
from tests.conftest import REPO

GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = os.environ.get("NEWSLETTER_REGEN_GOLDEN") == "1"
SAMPLES = sorted(p.name for p in (REPO / "issues").glob("*.md"))


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_matches_golden(settings: Settings, name: str) -> None:
    issue = load_issue(settings.issues_dir / name, settings)
    # with the image links `build` and `send` give it (the copies need not exist for that)
    rendered = Renderer(settings).render(issue, plan_images(issue, settings))
    for suffix, actual in ((".html", rendered.html), (".txt", rendered.text)):
        golden = GOLDEN / f"{issue.slug}{suffix}"
        if REGENERATE:
            golden.write_text(actual, encoding="utf-8")
            continue
        assert golden.exists(), f"{golden} missing; run NEWSLETTER_REGEN_GOLDEN=1 pytest {__file__}"
        expected = golden.read_text(encoding="utf-8")
        if actual != expected:
            diff = difflib.unified_diff(
                expected.splitlines(), actual.splitlines(), str(golden), "rendered", lineterm=""
            )
            pytest.fail(
                f"{golden.name} differs from the rendering (first 60 lines of the diff):\n"
                + "\n".join(list(diff)[:60])
                + "\nIf the change is intended: NEWSLETTER_REGEN_GOLDEN=1 pytest "
                "tests/test_render_golden.py, then review git diff tests/golden/"
            )


def test_every_golden_file_has_a_sample() -> None:
    slugs = {name[len("YYYY-MM-DD-") : -len(".md")] for name in SAMPLES}
    stale = [p.name for p in GOLDEN.iterdir() if p.stem not in slugs]
    assert stale == [], "golden files without a sample issue; delete them"
