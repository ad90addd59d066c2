"""What each layer imports: the engine and the send use-cases stay free of presentation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


def imported_by(module: str) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after ``import module``."""
    code = (
        f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "module", ["newsletter.delivery", "newsletter.sending", "newsletter.worker"]
)
def test_delivery_does_not_import_the_terminal_or_the_web(module: str) -> None:
    loaded = imported_by(module)
    assert "newsletter" in loaded
    assert not loaded & {"rich", "click", "starlette", "uvicorn"}, loaded
