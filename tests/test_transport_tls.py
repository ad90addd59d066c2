"""TLS and AUTH against real servers: STARTTLS, implicit TLS, logins, private CAs, secrets.

Every server here is aiosmtpd on loopback with a certificate from a throwaway CA
(:mod:`tests.tls`); the handler records whether each message arrived over TLS and as whom.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from newsletter.cli import main
from newsletter.config import Settings, load_settings
from newsletter.delivery import Policy
from newsletter.errors import ConfigError, TlsVerificationError, TransportUnavailableError
from newsletter.sending import prepare_issue, run_send
from newsletter.store.database import make_engine, migrate
from newsletter.store.schema import deliveries, subscribers
from newsletter.store.subscribers import add_subscriber, ensure_lists
from newsletter.transport import SmtpPool, endpoint_from_settings, send_single
from newsletter.worker import run_worker
from tests.conftest import TEST_SECRET, write_config
from tests.smtpd import RecordingHandler, SMTPServer
from tests.tls import Login, Pki, make_pki

USER = "newsletter"
PASSWORD = "s3cret-Pa55word-never-shown"
DATA = b"From: weekly@test.example\r\nTo: reader@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
ISSUE = "2026-11-20-flood-barrier-vote.md"
T0 = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
FAST = Policy(retry_base_seconds=60, max_attempts=5, batch_size=50, flush_interval=0.01)

ServerFactory = Callable[..., SMTPServer]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def login() -> Login:
    return Login(USER, PASSWORD)


@pytest.fixture
def start_server(pki: Pki, login: Login) -> Iterator[ServerFactory]:
    """Starts aiosmtpd servers: ``starttls``, ``smtps`` or ``plain``; ``auth`` adds a login."""
    servers: list[SMTPServer] = []

    def start(
        mode: str, *, auth: bool = False, require_starttls: bool = False, **options: Any
    ) -> SMTPServer:
        scheme = "smtp"
        if mode == "starttls":
            options.update(tls_context=pki.server_context(), require_starttls=require_starttls)
        elif mode == "smtps":
            options.update(ssl_context=pki.server_context())
            scheme = "smtps"
        if auth and mode == "starttls":
            # AUTH is neither offered nor accepted before the session is encrypted
            options.update(authenticator=login, auth_required=True, auth_require_tls=True)
        elif auth:
            # aiosmtpd counts only STARTTLS as TLS for auth_require_tls (and warns when AUTH is
            # required without it), so an implicit TLS relay offers AUTH without requiring it;
            # a plain one offers it in the clear, as a careless or downgraded relay would
            options.update(authenticator=login, auth_require_tls=False)
        server = SMTPServer(RecordingHandler(), scheme=scheme, **options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def configured(
    settings: Settings,
    server: SMTPServer,
    *,
    ca_file: Path | None,
    user: str | None = None,
    password: str | None = None,
) -> Settings:
    url = server.url.replace("://", f"://{user}@") if user else server.url
    return dataclasses.replace(
        settings,
        smtp_url=url,
        smtp_password=password,
        smtp=dataclasses.replace(settings.smtp, ca_file=ca_file, timeout=5),
    )


def add_readers(engine: Engine, settings: Settings, emails: Sequence[str]) -> None:
    with engine.begin() as conn:
        list_id = ensure_lists(conn, settings)["weekly"]
        for email in emails:
            add_subscriber(conn, email, list_ids=[list_id], now=T0)


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "weekly@test.example"
    msg["To"] = "reader@example.org"
    msg["Subject"] = "hello"
    msg.set_content("hello\n")
    return msg


def send_one(settings: Settings) -> None:
    asyncio.run(send_single(settings, message()))


def pool_send(settings: Settings, recipients: Sequence[str] = ("reader@example.org",)) -> None:
    async def go() -> None:
        pool = SmtpPool.from_settings(settings, local_hostname="sender.test")
        try:
            for rcpt in recipients:
                result = await pool.send("weekly@test.example", [rcpt], DATA)
                assert result.accepted == (rcpt,)
        finally:
            await pool.close()

    asyncio.run(go())


SENDERS = {"send_single": send_one, "pool": pool_send}
sender_param = pytest.mark.parametrize("send", SENDERS.values(), ids=list(SENDERS))


# --- TLS modes ----------------------------------------------------------------------------


@sender_param
def test_starttls_is_negotiated_when_offered(
    settings: Settings, pki: Pki, start_server: ServerFactory, send: Callable[[Settings], None]
) -> None:
    server = start_server("starttls")
    send(configured(settings, server, ca_file=pki.ca_cert))
    [received] = server.handler.messages
    assert received.tls
    assert received.rcpt_tos == ["reader@example.org"]


@sender_param
def test_plain_smtp_when_starttls_is_not_offered(
    settings: Settings, smtpd: SMTPServer, pki: Pki, send: Callable[[Settings], None]
) -> None:
    send(configured(settings, smtpd, ca_file=pki.ca_cert))
    [received] = smtpd.handler.messages
    assert not received.tls
    assert received.rcpt_tos == ["reader@example.org"]


@sender_param
def test_smtps_is_implicit_tls(
    settings: Settings, pki: Pki, start_server: ServerFactory, send: Callable[[Settings], None]
) -> None:
    server = start_server("smtps")
    assert server.url.startswith("smtps://")
    send(configured(settings, server, ca_file=pki.ca_cert))
    [received] = server.handler.messages
    assert received.tls


def test_starttls_required_by_the_server_is_met(
    settings: Settings, pki: Pki, start_server: ServerFactory
) -> None:
    # a relay that refuses MAIL before STARTTLS still gets the message from smtp://
    server = start_server("starttls", require_starttls=True)
    pool_send(configured(settings, server, ca_file=pki.ca_cert), ["a@example.org", "b@example.org"])
    assert [m.tls for m in server.handler.messages] == [True, True]


# --- certificates -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
@sender_param
def test_untrusted_certificate_is_a_clear_error(
    settings: Settings, start_server: ServerFactory, send: Callable[[Settings], None], mode: str
) -> None:
    # no ca_file: the system's CAs do not know the test CA, and verification is never skipped
    server = start_server(mode)
    with pytest.raises(TlsVerificationError) as caught:
        send(configured(settings, server, ca_file=None))
    text = str(caught.value)
    # a setting to fix, not an outage to wait out: no pause-and-retry forever
    assert isinstance(caught.value, ConfigError)
    assert not isinstance(caught.value, TransportUnavailableError)
    assert caught.value.key == "smtp.ca_file"
    assert f"127.0.0.1:{server.port}" in text
    assert "does not verify" in text
    assert "smtp.ca_file" in text
    assert server.handler.messages == []


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_a_different_ca_does_not_verify(
    settings: Settings,
    start_server: ServerFactory,
    tmp_path: Path,
    mode: str,
) -> None:
    other = make_pki(tmp_path / "other")
    server = start_server(mode)
    with pytest.raises(TlsVerificationError, match=r"smtp\.ca_file"):
        send_one(configured(settings, server, ca_file=other.ca_cert))
    assert server.handler.messages == []


def test_a_certificate_for_another_host_does_not_verify(
    settings: Settings, tmp_path: Path, login: Login
) -> None:
    # signed by a trusted CA, but for another name: host name checking is on too
    elsewhere = make_pki(tmp_path / "elsewhere", names=["relay.internal.example"])
    server = SMTPServer(RecordingHandler(), tls_context=elsewhere.server_context())
    server.start()
    try:
        expected = r"127\.0\.0\.1:\d+ does not verify \(IP address mismatch.*host name in smtp_url"
        with pytest.raises(TlsVerificationError, match=expected):
            send_one(configured(settings, server, ca_file=elsewhere.ca_cert))
    finally:
        server.stop()
    assert server.handler.messages == []


def test_unreadable_ca_file_is_a_config_error(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(ConfigError, match=r"smtp\.ca_file: cannot load CA .*no-such-ca\.pem"):
        endpoint_from_settings(dataclasses.replace(settings, smtp=dataclasses.replace(
            settings.smtp, ca_file=missing
        )))  # fmt: skip
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n", encoding="ascii")
    with pytest.raises(ConfigError, match=r"smtp\.ca_file"):
        endpoint_from_settings(
            dataclasses.replace(settings, smtp=dataclasses.replace(settings.smtp, ca_file=not_pem))
        )


def test_ca_file_is_read_from_config_relative_to_it(project: Path, tmp_path: Path) -> None:
    path = write_config(project, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    env = {"NEWSLETTER_SECRET_KEY": TEST_SECRET, "NEWSLETTER_SMTP_CA_FILE": "certs/relay-ca.pem"}
    assert load_settings(path, environ=env).smtp.ca_file == project / "certs" / "relay-ca.pem"
    assert load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET}).smtp.ca_file is None


def test_the_tls_context_is_built_once(settings: Settings, pki: Pki) -> None:
    with_ca = dataclasses.replace(
        settings, smtp=dataclasses.replace(settings.smtp, ca_file=pki.ca_cert)
    )
    first, second = endpoint_from_settings(with_ca), endpoint_from_settings(with_ca)
    assert first.tls_context is not None
    assert first.tls_context is second.tls_context
    assert first.tls_context.check_hostname
    assert first.tls_context.verify_mode.name == "CERT_REQUIRED"
    default = endpoint_from_settings(settings).tls_context
    assert default is not None
    assert default is not first.tls_context
    assert default.verify_mode.name == "CERT_REQUIRED"


# --- AUTH ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
@sender_param
def test_login_with_the_password_from_settings(
    settings: Settings,
    pki: Pki,
    start_server: ServerFactory,
    login: Login,
    send: Callable[[Settings], None],
    mechanism: str,
    mode: str,
) -> None:
    other = "PLAIN" if mechanism == "LOGIN" else "LOGIN"
    server = start_server(mode, auth=True, auth_exclude_mechanism=[other])
    send(configured(settings, server, ca_file=pki.ca_cert, user=USER, password=PASSWORD))
    [received] = server.handler.messages
    assert received.tls
    assert received.login == USER
    assert login.attempts == [(mechanism, USER, True, True)]


def test_username_from_the_smtp_section(
    settings: Settings, pki: Pki, start_server: ServerFactory, login: Login
) -> None:
    server = start_server("starttls", auth=True)
    base = configured(settings, server, ca_file=pki.ca_cert, password=PASSWORD)
    send_one(dataclasses.replace(base, smtp=dataclasses.replace(base.smtp, username=USER)))
    assert [m.login for m in server.handler.messages] == [USER]


def secret_forms(password: str) -> list[str]:
    """The password and the encodings AUTH LOGIN / PLAIN would put on the wire."""
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{USER}\0{password}".encode()).decode(),
    ]


def chain_text(exc: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
@sender_param
def test_wrong_password_is_a_clear_error_without_the_password(
    settings: Settings,
    pki: Pki,
    start_server: ServerFactory,
    login: Login,
    send: Callable[[Settings], None],
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    wrong = "wr0ng-Pa55word-not-for-logs"
    server = start_server(mode, auth=True)
    bad = configured(settings, server, ca_file=pki.ca_cert, user=USER, password=wrong)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TransportUnavailableError) as caught:
        send(bad)
    text = str(caught.value)
    assert f"127.0.0.1:{server.port}" in text
    assert f"refused the login for {USER}" in text
    assert "535" in text
    assert "NEWSLETTER_SMTP_PASSWORD" in text
    assert caught.value.code == 535
    assert server.handler.messages == []
    # aiosmtplib tries each mechanism the server offers before giving up
    assert {(user, ok) for _, user, _, ok in login.attempts} == {(USER, False)}
    # not in the error, its causes, the settings, the endpoint, or any log but the test server's
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))
    seen = "\n".join(
        [
            chain_text(caught.value),
            ours,
            repr(bad),
            repr(bad.smtp),
            repr(endpoint_from_settings(bad)),
        ]
    )
    for form in secret_forms(wrong):
        assert form not in seen


def test_password_is_not_in_reprs_or_logs_of_a_good_send(
    settings: Settings,
    pki: Pki,
    start_server: ServerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server("starttls", auth=True)
    good = configured(settings, server, ca_file=pki.ca_cert, user=USER, password=PASSWORD)
    caplog.set_level(logging.DEBUG)
    send_one(good)
    pool_send(good)
    assert len(server.handler.messages) == 2
    endpoint = endpoint_from_settings(good)
    assert endpoint.password == PASSWORD  # it is there, just never shown
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))
    seen = "\n".join([ours, repr(good), str(good), repr(endpoint), str(endpoint)])
    for form in secret_forms(PASSWORD):
        assert form not in seen


def test_no_login_against_a_server_requiring_one_is_a_clear_error(
    settings: Settings, pki: Pki, start_server: ServerFactory
) -> None:
    server = start_server("starttls", auth=True)
    with pytest.raises(TransportUnavailableError, match=f"127.0.0.1:{server.port}"):
        pool_send(configured(settings, server, ca_file=pki.ca_cert))
    assert server.handler.messages == []


@sender_param
def test_the_password_is_never_sent_without_tls(
    settings: Settings,
    pki: Pki,
    start_server: ServerFactory,
    login: Login,
    send: Callable[[Settings], None],
) -> None:
    # a relay offering AUTH but no STARTTLS (or a man in the middle who removed it)
    server = start_server("plain", auth=True)
    relay = configured(settings, server, ca_file=pki.ca_cert, user=USER, password=PASSWORD)
    with pytest.raises(TransportUnavailableError) as caught:
        send(relay)
    text = str(caught.value)
    assert f"127.0.0.1:{server.port} offers no STARTTLS" in text
    assert "never sent unencrypted" in text
    assert PASSWORD not in chain_text(caught.value)
    assert login.attempts == []
    assert server.handler.messages == []


def test_a_user_with_a_relay_offering_no_auth_is_a_clear_error(
    settings: Settings, pki: Pki, start_server: ServerFactory
) -> None:
    server = start_server("smtps")  # aiosmtpd offers AUTH only after STARTTLS by default
    relay = configured(settings, server, ca_file=pki.ca_cert, user=USER, password=PASSWORD)
    with pytest.raises(TransportUnavailableError, match=f"does not offer AUTH for {USER}"):
        send_one(relay)
    assert server.handler.messages == []


# --- a whole send ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_bulk_send_over_tls_with_login_reaches_everyone(
    engine: Engine,
    settings: Settings,
    project: Path,
    pki: Pki,
    start_server: ServerFactory,
    login: Login,
    mode: str,
) -> None:
    emails = [f"reader{i}@example.org" for i in range(12)]
    add_readers(engine, settings, emails)
    server = start_server(mode, auth=True)
    relay = configured(settings, server, ca_file=pki.ca_cert, user=USER, password=PASSWORD)
    assert relay.smtp.connections == 2

    report = run_send(relay, engine, project / "issues" / ISSUE, now=T0, policy=FAST)

    assert report.finished
    assert report.sent == len(emails)
    assert server.handler.by_recipient() == dict.fromkeys(emails, 1)
    assert all(m.tls and m.login == USER for m in server.handler.messages)
    # one login per pooled connection, each over TLS
    assert 1 <= len(login.attempts) <= relay.smtp.connections
    assert all(tls and ok for _, _, tls, ok in login.attempts)
    with engine.connect() as conn:
        rows = conn.execute(
            select(subscribers.c.email, deliveries.c.status).join(
                subscribers, subscribers.c.id == deliveries.c.subscriber_id
            )
        ).all()
    assert {row.email: row.status for row in rows} == dict.fromkeys(emails, "sent")


def test_bulk_send_with_untrusted_certificate_stops_with_the_reason(
    engine: Engine, settings: Settings, project: Path, start_server: ServerFactory
) -> None:
    add_readers(engine, settings, ["reader@example.org", "other@example.org"])
    server = start_server("starttls")
    with pytest.raises(TlsVerificationError) as caught:
        run_send(
            configured(settings, server, ca_file=None),
            engine,
            project / "issues" / ISSUE,
            now=T0,
            policy=FAST,
        )
    assert "does not verify" in str(caught.value)
    assert "smtp.ca_file" in str(caught.value)
    assert server.handler.messages == []
    # every row went back untouched: not an attempt, due at once when the setting is fixed
    with engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.status, deliveries.c.attempts)).all()
    assert sorted(rows) == [("pending", 0), ("pending", 0)]


def test_a_worker_stops_on_an_untrusted_certificate(
    engine: Engine, settings: Settings, project: Path, start_server: ServerFactory
) -> None:
    add_readers(engine, settings, ["reader@example.org"])
    server = start_server("starttls")
    untrusted = configured(settings, server, ca_file=None)
    prepare_issue(untrusted, engine, project / "issues" / ISSUE, now=T0)
    events: list[str] = []
    with pytest.raises(TlsVerificationError, match="does not verify"):
        run_worker(untrusted, engine, until_done=True, on_event=events.append, policy=FAST)
    assert not any("trying again" in event for event in events)
    assert server.handler.messages == []


# --- from the command line, configured through the environment ------------------------------


@pytest.mark.parametrize(
    ("password", "ca", "code", "says"),
    [
        (PASSWORD, True, 0, "3 sent now"),
        ("not-the-Pa55word", True, 75, "refused the login for newsletter: 535"),
        (PASSWORD, False, 1, "does not verify"),
    ],
    ids=["delivered", "wrong-password", "untrusted"],
)
def test_newsletter_send_over_starttls_with_login(
    project: Path,
    tmp_path: Path,
    pki: Pki,
    start_server: ServerFactory,
    password: str,
    ca: bool,
    code: int,
    says: str,
) -> None:
    server = start_server("starttls", auth=True)
    database_url = f"sqlite:///{tmp_path / 'newsletter.db'}"
    config = write_config(
        project,
        database_url=database_url,
        smtp_url=f"smtp://{USER}@" + server.url[len("smtp://") :],
    )
    env = {"NEWSLETTER_SECRET_KEY": TEST_SECRET, "NEWSLETTER_SMTP_PASSWORD": password}
    if ca:
        env["NEWSLETTER_SMTP_CA_FILE"] = str(pki.ca_cert)
    engine = make_engine(database_url)
    migrate(engine)
    add_readers(
        engine,
        load_settings(config, environ=env),
        ["a@example.org", "b@example.org", "c@example.org"],
    )
    engine.dispose()

    result = CliRunner().invoke(
        main, ["--config", str(config), "send", ISSUE, "--no-progress"], env=env
    )

    assert result.exit_code == code, result.output
    assert says in result.output
    assert "Traceback" not in result.output
    if not ca:
        assert "set smtp.ca_file" in result.output
    assert password not in result.output
    assert len(server.handler.messages) == (3 if code == 0 else 0)
