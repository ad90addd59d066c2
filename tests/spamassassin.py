"""SpamAssassin (Debian's ``spamassassin``) as an outside judge of what we send.

Local tests only (``-L``: no DNS blocklists, no network). A machine without it skips with the
reason, unless ``NEWSLETTER_REQUIRE_SPAMASSASSIN=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_SPAMASSASSIN = os.environ.get("NEWSLETTER_REQUIRE_SPAMASSASSIN") == "1"
_SCORE = re.compile(r"Content analysis details:\s+\((-?[0-9.]+) points")
_RULE = re.compile(r"^\s*(-?[0-9.]+)\s+([A-Z0-9_]+)\s", re.MULTILINE)


@dataclass(frozen=True)
class Verdict:
    score: float
    # rules that scored, with their points
    rules: dict[str, float]
    report: str


def spamassassin() -> str:
    found = shutil.which("spamassassin")
    if found:
        return found
    if REQUIRE_SPAMASSASSIN:
        pytest.fail("NEWSLETTER_REQUIRE_SPAMASSASSIN=1 but spamassassin is not installed")
    pytest.skip("SpamAssassin tests need Debian's spamassassin (apt-get install spamassassin)")


def judge(message: bytes, home: Path) -> Verdict:
    """Score ``message`` with the local rules; ``home`` keeps its per-user files out of ~."""
    home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [spamassassin(), "-L", "-t", "-x"],
        input=message,
        capture_output=True,
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        timeout=120,
        check=False,
    )
    report = result.stdout.decode("utf-8", errors="replace")
    match = _SCORE.search(report)
    assert match, f"no score in SpamAssassin's report:\n{report[-2000:]}\n{result.stderr!r}"
    details = report[match.end() :]
    rules = {name: float(points) for points, name in _RULE.findall(details) if float(points)}
    return Verdict(float(match.group(1)), rules, details)
