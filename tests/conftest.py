"""Shared fixtures: settings on a temporary directory, real SQLite and PostgreSQL, real SMTP,
the public web app through TestClient, and the CLI run in-process.

PostgreSQL tests read ``NEWSLETTER_TEST_POSTGRES_URL``. Without it they are skipped with a
reason, unless ``NEWSLETTER_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, create_engine, text
from starlette.testclient import TestClient

from newsletter.cli import main
from newsletter.config import Settings, load_settings
from newsletter.sink import free_port
from newsletter.store.database import make_engine, migrate
from newsletter.store.subscribers import ensure_lists
from newsletter.web.app import create_app
from tests.smtpd import RecordingHandler, SMTPServer

__all__ = ["REPO", "TEST_SECRET", "FakeClock", "free_port", "run_cli", "write_config"]

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("NEWSLETTER_TEST_POSTGRES_URL")
REQUIRE_POSTGRES = os.environ.get("NEWSLETTER_REQUIRE_POSTGRES") == "1"
TEST_SECRET = "test-secret-key-0123456789abcdef"

TEST_CONFIG = """
database_url = "{database_url}"
smtp_url = "{smtp_url}"
issues_dir = "issues"
templates_dir = "{templates}"
maildir = "var/maildir"

[publication]
name = "The Test Weekly"
sender = "The Test Weekly <weekly@test.example>"
reply_to = "editors@test.example"
postal_address = "1 Test Street, Testville"
base_url = "https://news.test.example"
default_list = "weekly"
timezone = "Europe/Kyiv"
editor_email = "editor@test.example"

[lists.weekly]
name = "The Test Weekly"
schedule = "fri 13:00 Europe/Kyiv"

[lists.business]
name = "Business Brief"

[smtp]
connections = 2
timeout = 5
# a stopped test relay pauses the send in a second, not smtp's default minute
unreachable_after = 1
"""


def require_postgres() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if REQUIRE_POSTGRES:
        pytest.fail("NEWSLETTER_REQUIRE_POSTGRES=1 but NEWSLETTER_TEST_POSTGRES_URL is not set")
    pytest.skip(
        "PostgreSQL tests need NEWSLETTER_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)"
    )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, empty PostgreSQL schema of its own (dropped afterwards)."""
    base = require_postgres()
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs twice: on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'newsletter.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def smtp_handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def smtpd(smtp_handler: RecordingHandler) -> Iterator[SMTPServer]:
    """A real aiosmtpd server on 127.0.0.1; set ``smtpd.handler.faults`` to inject faults."""
    server = SMTPServer(smtp_handler)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the sample issues (and their images) in a temporary project directory."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(REPO / "issues", root / "issues")
    return root


def write_config(root: Path, *, database_url: str, smtp_url: str = "smtp://127.0.0.1:1") -> Path:
    path = root / "newsletter.toml"
    path.write_text(
        TEST_CONFIG.format(
            database_url=database_url,
            smtp_url=smtp_url,
            templates=str(REPO / "templates"),
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def settings(project: Path, tmp_path: Path) -> Settings:
    """Settings for a temporary project on SQLite, with no SMTP server behind them."""
    path = write_config(project, database_url=f"sqlite:///{tmp_path / 'newsletter.db'}")
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})


@pytest.fixture
def lists(engine: Engine, settings: Settings) -> dict[str, int]:
    """The configured lists in the test database: slug -> id."""
    with engine.begin() as conn:
        return ensure_lists(conn, settings)


@pytest.fixture
def web_settings(project: Path, database_url: str, smtpd: SMTPServer) -> Settings:
    """Settings on the test database (both kinds) with the real SMTP fixture as the relay."""
    path = write_config(project, database_url=database_url, smtp_url=smtpd.url)
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})


class FakeClock:
    """Monotonic seconds that move only when a test says so (the rate limits' clock)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(web_settings: Settings, engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    """The public app (subscribe, unsubscribe, archive) at https://news.test.example."""
    app = create_app(web_settings, engine=engine, clock=clock)
    with TestClient(app, base_url="https://news.test.example", follow_redirects=False) as c:
        yield c


def run_cli(config: Path, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """``newsletter --config CONFIG ARGS...`` in this process, as a person runs it.

    The test signing key is set and ``NEWSLETTER_CONFIG`` cleared; ``env`` adds to that. An
    exception other than the CLI's own exit fails the test with its traceback.
    """
    base: dict[str, str | None] = {"NEWSLETTER_SECRET_KEY": TEST_SECRET, "NEWSLETTER_CONFIG": None}
    return CliRunner().invoke(
        main, ["--config", str(config), *args], env={**base, **(env or {})}, catch_exceptions=False
    )
