"""Settings: defaults, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError

MINIMAL = """
[publication]
name = "Weekly"
sender = "Weekly <w@example.org>"
postal_address = "1 Road"
base_url = "https://example.org"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_gets_defaults_and_a_default_list(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, MINIMAL), environ={})
    assert s.publication.name == "Weekly"
    assert list(s.lists) == ["weekly"]
    assert s.database_url == f"sqlite:///{tmp_path / 'newsletter.db'}"
    assert s.issues_dir == tmp_path / "issues"
    assert s.smtp.connections == 4


def test_environment_overrides_section_and_top_level_keys(tmp_path: Path) -> None:
    env = {
        "NEWSLETTER_PUBLICATION_BASE_URL": "https://news.example.org",
        "NEWSLETTER_SMTP_CONNECTIONS": "16",
        "NEWSLETTER_DATABASE_URL": "postgresql://u@db/news",
        "NEWSLETTER_SECRET_KEY": "k" * 32,
        "NEWSLETTER_SMTP_PASSWORD": "hunter2",
    }
    s = load_settings(write(tmp_path, MINIMAL), environ=env)
    assert s.publication.base_url == "https://news.example.org"
    assert s.smtp.connections == 16
    assert s.database_url == "postgresql://u@db/news"
    assert s.secret_key == b"k" * 32
    assert s.smtp_password == "hunter2"


def test_secrets_never_appear_in_repr(tmp_path: Path) -> None:
    env = {
        "NEWSLETTER_SECRET_KEY": "s3cret-" * 5,
        "NEWSLETTER_SMTP_PASSWORD": "hunter2",
        "NEWSLETTER_DATABASE_URL": "postgresql://news:dbpass99@db.example/news",
    }
    s = load_settings(write(tmp_path, MINIMAL), environ=env)
    assert "s3cret" not in repr(s)
    assert "hunter2" not in repr(s)
    assert "dbpass99" not in repr(s)


def test_generated_secret_is_private_and_stable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    first = load_settings(path, environ={}).secret_key
    key_file = tmp_path / "var" / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_settings(path, environ={}).secret_key == first
    assert len(first) >= 32


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        (MINIMAL.replace('name = "Weekly"\n', ""), "publication.name", "missing"),
        (MINIMAL + 'base_ulr = "x"\n', "publication.base_ulr", "did you mean 'base_url'"),
        (MINIMAL + "\n[smtp]\nconections = 3\n", "smtp.conections", "did you mean 'connections'"),
        (MINIMAL + '\n[smtp]\nconnections = "many"\n', "smtp.connections", "expected int"),
        (MINIMAL + '\n[lists.weekly]\ndescription = "x"\n', "lists.weekly.name", "missing"),
        (
            MINIMAL + 'default_list = "nope"\n[lists.weekly]\nname = "W"\n',
            "publication.default_list",
            "not one of",
        ),
        (MINIMAL + 'timezone = "Mars/Olympus"\n', "publication.timezone", "unknown time zone"),
        ("databse_url = 'x'\n" + MINIMAL, "databse_url", "did you mean 'database_url'"),
        (MINIMAL + "[", "file", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ={})
    assert info.value.key == key
    assert hint in str(info.value)
    assert str(tmp_path / "newsletter.toml") in str(info.value)


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, MINIMAL), environ={"NEWSLETTER_SMTP_RATE": "fast"})
    assert info.value.key == "smtp.rate"
    assert "NEWSLETTER_SMTP_RATE" in str(info.value)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NEWSLETTER_CONFIG"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_unknown_list_is_a_config_error(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, MINIMAL), environ={})
    with pytest.raises(ConfigError, match="no list named 'daily'"):
        s.mailing_list("daily")
    assert s.mailing_list(None).slug == "weekly"


def test_repository_config_loads() -> None:
    repo = Path(__file__).resolve().parent.parent
    s = load_settings(repo / "newsletter.toml", environ={"NEWSLETTER_SECRET_KEY": "x" * 32})
    assert s.lists["weekly"].schedule
    assert s.publication.default_list in s.lists


def test_one_error_hierarchy() -> None:
    """Every error raised on purpose is a NewsletterError; meaning never hangs on except order."""
    from newsletter import errors

    assert not issubclass(errors.TransportUnavailableError, errors.DeliveryError)
    assert issubclass(errors.QuotaReachedError, errors.TransportUnavailableError)
    assert issubclass(errors.TlsVerificationError, errors.ConfigError)
    assert not issubclass(errors.TlsVerificationError, errors.TransportUnavailableError)
    for web in (errors.FormError, errors.BodyTooLarge, errors.InvalidLink):
        assert issubclass(web, errors.WebError)
        assert issubclass(web, errors.NewsletterError)
    assert str(errors.TlsVerificationError("it does not verify", key="smtp.ca_file")) == (
        "it does not verify"
    )


def test_no_bare_newsletter_error_is_raised() -> None:
    """Raises name the specific error, so callers can tell a bad file from a bad setting."""
    import re

    from tests.conftest import REPO

    sources = [*(REPO / "newsletter").rglob("*.py"), REPO / "scheduler.py"]
    bare = re.compile(r"raise NewsletterError\(")
    offenders = [str(p) for p in sources if bare.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_earlier_signing_keys_are_read_checked_and_never_printed(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    current, old, older = "current-" * 4, "previous-key-" * 3, "oldest-key-" * 3
    env = {"NEWSLETTER_SECRET_KEY": current, "NEWSLETTER_SECRET_KEY_OLD": f" {old}, {older} ,"}
    s = load_settings(path, environ=env)
    assert s.secret_key == current.encode()
    assert s.secret_key_old == (old.encode(), older.encode())
    assert s.token_keys == (current.encode(), old.encode(), older.encode())
    for key in (current, old, older):
        assert key not in repr(s)
    assert load_settings(path, environ={"NEWSLETTER_SECRET_KEY": current}).secret_key_old == ()

    short = "tiny"
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={**env, "NEWSLETTER_SECRET_KEY_OLD": f"{old},{short}"})
    assert info.value.key == "NEWSLETTER_SECRET_KEY_OLD"
    assert "key 2 of 2 is too short" in str(info.value)
    assert short not in str(info.value)
    assert old not in str(info.value)
