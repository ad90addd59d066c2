"""``newsletter doctor`` against a real deployment on loopback, whole and broken.

The good setup is all real: an aiosmtpd relay with STARTTLS (a trustme CA) and a login, a
migrated SQLite database, ``newsletter serve``'s app under uvicorn with TLS at ``base_url``, a
DKIM key, a DNS server on a loopback UDP port (dnspython) publishing its records, and a port
where the bounce receiver answers. Each broken setup changes one thing.
"""

from __future__ import annotations

import base64
import dataclasses
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from click.testing import Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import Engine

from newsletter.cli.doctor import parse_nameserver
from newsletter.config import Settings, load_settings
from newsletter.doctor import (
    DnsLookupError,
    DnsResolver,
    Finding,
    Status,
    check_database,
    check_dkim,
    check_site,
    diagnose,
    dkim_matches,
    tags,
    verdict,
)
from newsletter.store.database import make_engine, migrate
from newsletter.store.subscribers import ensure_lists
from newsletter.web.app import create_app
from tests.conftest import TEST_SECRET, free_port, run_cli
from tests.serving import serving
from tests.smtpd import RecordingHandler, SMTPServer
from tests.tls import Login, Pki, make_pki

USER, PASSWORD = "weekly", "relay-password-9f2c1e7a"
SELECTOR = "nl2026"


class LoopbackDns:
    """An authoritative-looking DNS server on a loopback UDP port: TXT records from a dict."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def publish(self, name: str, *values: str) -> None:
        self.records[name.lower().rstrip(".") + "."] = list(values)

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().lower()
            self.queries.append(name)
            values = self.records.get(name)
            if values is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT:
                # strings of at most 255 bytes (RFC 1035); the reader joins them again
                texts = [
                    " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
                    for value in values
                ]
                response.answer.append(
                    dns.rrset.from_text_list(question.name, 60, "IN", "TXT", texts)
                )
            self.sock.sendto(response.to_wire(), peer)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An RSA key file and its public half as the p= value, computed here independently."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, base64.b64encode(der).decode()


@pytest.fixture
def zone() -> Iterator[LoopbackDns]:
    server = LoopbackDns()
    yield server
    server.stop()


@pytest.fixture
def relay(pki: Pki) -> Iterator[SMTPServer]:
    """The relay: STARTTLS with the test CA's certificate, AUTH only after it, one user."""
    server = SMTPServer(
        RecordingHandler(),
        tls_context=pki.server_context(),
        authenticator=Login(USER, PASSWORD),
        auth_required=True,
        auth_require_tls=True,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[SMTPServer]:
    """Where `newsletter inbound` would listen: an SMTP server answering on that port."""
    server = SMTPServer(RecordingHandler())
    server.start()
    yield server
    server.stop()


@dataclasses.dataclass
class Deployment:
    root: Path
    pki: Pki
    relay: SMTPServer
    zone: LoopbackDns
    dkim_key: Path
    dkim_p: str
    site_port: int
    receiver_port: int
    database: Path

    def config(
        self,
        *,
        base_url: str | None = None,
        smtp_url: str | None = None,
        ca_file: bool = True,
        database: Path | None = None,
    ) -> Path:
        base_url = base_url or f"https://localhost:{self.site_port}"
        smtp_url = smtp_url or self.relay.url.replace("://", f"://{USER}@")
        path = self.root / "newsletter.toml"
        path.write_text(
            f"""
database_url = "sqlite:///{database or self.database}"
smtp_url = "{smtp_url}"

[publication]
name = "The Test Weekly"
sender = "The Test Weekly <weekly@test.example>"
postal_address = "1 Test Street, Testville"
base_url = "{base_url}"
editor_email = "editor@test.example"

[smtp]
timeout = 5
{f'ca_file = "{self.pki.ca_cert}"' if ca_file else ""}

[dkim]
key_path = "{self.dkim_key}"
selector = "{SELECTOR}"
domain = "test.example"

[bounces]
domain = "bounces.test.example"
listen_port = {self.receiver_port}
""",
            encoding="utf-8",
        )
        return path

    def publish_all(self) -> None:
        """What an operator publishes after reading the doctor's records."""
        self.zone.publish(f"{SELECTOR}._domainkey.test.example", f"v=DKIM1; k=rsa; p={self.dkim_p}")
        self.zone.publish("bounces.test.example", "v=spf1 ip4:192.0.2.10 -all")
        self.zone.publish("_dmarc.test.example", "v=DMARC1; p=quarantine")

    def doctor(self, config: Path, *args: str, env: dict[str, str | None] | None = None) -> Result:
        base: dict[str, str | None] = {
            "NEWSLETTER_SMTP_PASSWORD": PASSWORD,
            # the site's certificate is from the test CA: OpenSSL's default trust file
            "SSL_CERT_FILE": str(self.pki.ca_cert),
        }
        return run_cli(
            config,
            "doctor",
            "--dns",
            "--nameserver",
            f"127.0.0.1:{self.zone.port}",
            "--timeout",
            "5",
            *args,
            env={**base, **(env or {})},
        )


@pytest.fixture
def migrated_sqlite(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    path = tmp_path / "newsletter.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    yield path, engine
    engine.dispose()


@pytest.fixture
def deployment(
    tmp_path: Path,
    pki: Pki,
    relay: SMTPServer,
    zone: LoopbackDns,
    receiver: SMTPServer,
    dkim_key: tuple[Path, str],
    migrated_sqlite: tuple[Path, Engine],
) -> Iterator[Deployment]:
    root = tmp_path / "pub"
    root.mkdir()
    database, engine = migrated_sqlite
    deployment = Deployment(
        root=root,
        pki=pki,
        relay=relay,
        zone=zone,
        dkim_key=dkim_key[0],
        dkim_p=dkim_key[1],
        site_port=0,
        receiver_port=receiver.port,
        database=database,
    )
    config = deployment.config(base_url="https://localhost:1")
    settings = load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    with engine.begin() as conn:
        ensure_lists(conn, settings)
    # the real app, with TLS, as nginx would present it
    app = create_app(settings, engine=engine)
    with serving(app, certfile=pki.server_cert, keyfile=pki.server_key) as port:
        deployment.site_port = port
        deployment.publish_all()
        yield deployment


def lines(result: Result) -> dict[str, list[str]]:
    """Findings by check: the status word of each line that names one."""
    found: dict[str, list[str]] = {}
    for line in result.output.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("ok", "warn", "fail"):
            found.setdefault(words[1], []).append(words[0])
    return found


# --- the whole command -------------------------------------------------------------------


def test_a_good_deployment_is_ready(deployment: Deployment) -> None:
    result = deployment.doctor(deployment.config())
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert set(found) == {
        "config",
        "database",
        "smtp",
        "smtp.tls",
        "smtp.login",
        "dkim",
        "spf",
        "dmarc",
        "base_url",
        "healthz",
        "secret_key",
        "editor",
        "bounces",
    }
    assert all(statuses == ["ok"] * len(statuses) for statuses in found.values()), result.output
    assert "ready to send (0 warning(s))" in result.output
    assert f"login accepted for {USER}" in result.output
    assert "STARTTLS (TLSv1.3), the certificate verifies" in result.output
    assert "matches" in result.output
    assert f"https://localhost:{deployment.site_port}/healthz answers ok" in result.output
    # it asked DNS for the three records and did not print the secrets
    assert f"{SELECTOR}._domainkey.test.example." in deployment.zone.queries
    assert "_dmarc.test.example." in deployment.zone.queries
    assert "bounces.test.example." in deployment.zone.queries
    assert PASSWORD not in result.output
    assert TEST_SECRET not in result.output


def test_relay_down_blocks_sending(deployment: Deployment) -> None:
    deployment.relay.stop()
    result = deployment.doctor(deployment.config())
    assert result.exit_code == 1
    assert lines(result)["smtp"] == ["fail"]
    assert f"cannot reach the relay at 127.0.0.1:{deployment.relay.port}" in result.output
    assert "check smtp_url" in result.output
    # the other checks still ran
    assert lines(result)["healthz"] == ["ok"]
    assert "not ready: 1 problem(s) block sending" in result.output


def test_a_port_where_nothing_listens(deployment: Deployment) -> None:
    result = deployment.doctor(deployment.config(smtp_url=f"smtp://127.0.0.1:{free_port()}"))
    assert result.exit_code == 1
    assert lines(result)["smtp"] == ["fail"]


def test_wrong_dkim_record_blocks_and_shows_the_record_to_publish(
    deployment: Deployment,
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    other_p = base64.b64encode(
        other.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    deployment.zone.publish(f"{SELECTOR}._domainkey.test.example", f"v=DKIM1; k=rsa; p={other_p}")
    result = deployment.doctor(deployment.config())
    assert result.exit_code == 1
    assert lines(result)["dkim"] == ["fail"]
    assert "holds another rsa key than the one signing" in result.output
    # the exact record, in zone-file form, split into strings of at most 255 characters
    record = f"v=DKIM1; k=rsa; p={deployment.dkim_p}"
    quoted = " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))
    assert f"{SELECTOR}._domainkey.test.example. IN TXT ( {quoted} )" in result.output


def test_missing_dkim_record_blocks(deployment: Deployment) -> None:
    del deployment.zone.records[f"{SELECTOR}._domainkey.test.example."]
    result = deployment.doctor(deployment.config())
    assert result.exit_code == 1
    assert f"no DKIM record at {SELECTOR}._domainkey.test.example" in result.output


def test_http_base_url_blocks_sending(
    deployment: Deployment, migrated_sqlite: tuple[Path, Engine]
) -> None:
    _, engine = migrated_sqlite
    settings = load_settings(deployment.config(), environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})
    with serving(create_app(settings, engine=engine)) as port:
        result = deployment.doctor(deployment.config(base_url=f"http://localhost:{port}"))
    assert result.exit_code == 1
    assert lines(result)["base_url"] == ["fail"]
    assert "is not https: one-click unsubscribe (RFC 8058) needs an https link" in result.output
    # the site itself answers: only the scheme is wrong
    assert lines(result)["healthz"] == ["ok"]


def test_refused_login_blocks_sending(deployment: Deployment) -> None:
    result = deployment.doctor(
        deployment.config(), env={"NEWSLETTER_SMTP_PASSWORD": "not-the-password"}
    )
    assert result.exit_code == 1
    assert lines(result)["smtp.login"] == ["fail"]
    assert f"refused the login for {USER}: 535" in result.output
    assert "not-the-password" not in result.output


def test_untrusted_relay_certificate_blocks_sending(deployment: Deployment, tmp_path: Path) -> None:
    # a relay whose certificate comes from a CA neither smtp.ca_file nor the system trusts
    elsewhere = make_pki(tmp_path / "elsewhere")
    stranger = SMTPServer(RecordingHandler(), tls_context=elsewhere.server_context())
    stranger.start()
    try:
        result = deployment.doctor(deployment.config(smtp_url=f"smtp://{USER}@{stranger.url[7:]}"))
    finally:
        stranger.stop()
    assert result.exit_code == 1
    assert lines(result)["smtp"] == ["ok"]
    assert lines(result)["smtp.tls"] == ["fail"]
    assert "does not verify" in result.output
    assert "smtp.ca_file" in result.output
    assert "smtp.login" not in lines(result)


def test_a_relay_without_starttls_never_gets_the_password(deployment: Deployment) -> None:
    login = Login(USER, PASSWORD)
    plain = SMTPServer(RecordingHandler(), authenticator=login, auth_require_tls=False)
    plain.start()
    try:
        result = deployment.doctor(deployment.config(smtp_url=f"smtp://{USER}@{plain.url[7:]}"))
    finally:
        plain.stop()
    assert result.exit_code == 1
    assert lines(result)["smtp.tls"] == ["fail"]
    assert f"offers no STARTTLS, and the password for {USER} is never sent" in result.output
    assert login.attempts == []


def test_a_local_relay_without_tls_or_login_is_fine(deployment: Deployment) -> None:
    # the embedded default: a sink or a local Postfix on loopback, no TLS, no login
    local = SMTPServer(RecordingHandler())
    local.start()
    try:
        result = deployment.doctor(deployment.config(smtp_url=local.url))
    finally:
        local.stop()
    assert result.exit_code == 0, result.output
    assert lines(result)["smtp.tls"] == ["ok"]
    assert "no TLS: the relay is on this machine" in result.output
    assert "no login configured" in result.output


def test_unpublished_spf_and_dmarc_warn_but_do_not_block(deployment: Deployment) -> None:
    del deployment.zone.records["bounces.test.example."]
    del deployment.zone.records["_dmarc.test.example."]
    result = deployment.doctor(deployment.config(), env={"NEWSLETTER_SECRET_KEY": None})
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert found["spf"] == ["warn"]
    assert found["dmarc"] == ["warn"]
    assert found["secret_key"] == ["warn"]
    assert 'bounces.test.example. IN TXT ( "v=spf1 mx ~all" )' in result.output
    assert "_dmarc.test.example. IN TXT" in result.output
    assert "ready to send (3 warning(s))" in result.output


def test_receiver_down_warns(deployment: Deployment, receiver: SMTPServer) -> None:
    receiver.stop()
    result = deployment.doctor(deployment.config())
    assert result.exit_code == 0
    assert lines(result)["bounces"] == ["warn"]
    assert "start `newsletter inbound`" in result.output


def test_a_database_not_migrated_blocks(deployment: Deployment, tmp_path: Path) -> None:
    result = deployment.doctor(deployment.config(database=tmp_path / "absent.db"))
    assert result.exit_code == 1
    assert lines(result)["database"] == ["fail"]
    assert "no database at" in result.output
    assert "run `newsletter init`" in result.output
    # the doctor looked, it did not make an empty file
    assert not (tmp_path / "absent.db").exists()

    empty = tmp_path / "empty.db"
    with make_engine(f"sqlite:///{empty}").connect():
        pass
    result = deployment.doctor(deployment.config(database=empty))
    assert result.exit_code == 1
    assert "is not set up; this release needs revision" in result.output


def test_a_config_that_does_not_load(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text('[publication]\nname = "X"\n', encoding="utf-8")
    result = run_cli(config, "doctor")
    assert result.exit_code == 1
    assert lines(result) == {"config": ["fail"]}
    assert "publication.sender" in result.output


def test_without_dns_the_records_to_publish_are_printed(deployment: Deployment) -> None:
    result = run_cli(
        deployment.config(),
        "doctor",
        env={"NEWSLETTER_SMTP_PASSWORD": PASSWORD, "SSL_CERT_FILE": str(deployment.pki.ca_cert)},
    )
    assert result.exit_code == 0, result.output
    assert deployment.zone.queries == []
    assert deployment.dkim_p[:200] in result.output.replace('" "', "")
    assert "run with --dns to check" in result.output


# --- the checks one by one ---------------------------------------------------------------


def test_database_check_on_both_databases(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        _bare(tmp_path).config(database=tmp_path / "unused.db"),
        environ={"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": TEST_SECRET},
    )
    finding = check_database(settings)
    assert finding.status is Status.OK, finding
    assert "schema at revision" in finding.message


def test_database_check_not_set_up(postgres_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, NEWSLETTER_DATABASE_URL=postgres_url)
    finding = check_database(settings)
    assert finding.status is Status.FAIL
    assert "not set up" in finding.message


def test_database_unreachable_hides_the_password(tmp_path: Path) -> None:
    url = f"postgresql://editor:hunter2-secret@127.0.0.1:{free_port()}/news"
    finding = check_database(_settings(tmp_path, NEWSLETTER_DATABASE_URL=url))
    assert finding.status is Status.FAIL
    assert "cannot reach the database" in finding.message
    assert "hunter2-secret" not in finding.message


def test_healthz_503_is_a_failure(tmp_path: Path, pki: Pki) -> None:
    settings = _settings(tmp_path)
    broken = make_engine(f"sqlite:///{tmp_path}/no/such/dir.db")
    try:
        with serving(create_app(settings, engine=broken)) as port:
            site = dataclasses.replace(
                settings,
                publication=dataclasses.replace(
                    settings.publication, base_url=f"http://127.0.0.1:{port}/"
                ),
            )
            findings = check_site(site, context=None, timeout=5)
    finally:
        broken.dispose()
    assert [f.status for f in findings] == [Status.FAIL, Status.FAIL]
    assert "answers 503, not ok: the app cannot use its database" in findings[1].message


def test_an_unreadable_dkim_key_blocks(tmp_path: Path, dkim_key: tuple[Path, str]) -> None:
    settings = _settings(tmp_path)
    missing = dataclasses.replace(
        settings, dkim=dataclasses.replace(settings.dkim, key_path=tmp_path / "gone.pem")
    )
    (finding,) = check_dkim(missing, None)
    assert finding.status is Status.FAIL
    assert "dkim.key_path" in finding.message
    assert "gone.pem" in finding.message


def test_an_ed25519_key_gets_its_own_record(tmp_path: Path, zone: LoopbackDns) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ed.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    settings = _settings(tmp_path)
    both = dataclasses.replace(
        settings,
        dkim=dataclasses.replace(settings.dkim, ed25519_key_path=path, ed25519_selector="ed1"),
    )
    expected = f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    zone.publish("ed1._domainkey.test.example", "some=other; txt", expected)
    findings = check_dkim(both, DnsResolver(("127.0.0.1", zone.port), timeout=5))
    # the RSA record is not published in this zone, the Ed25519 one is (beside another TXT)
    assert [f.status for f in findings] == [Status.FAIL, Status.OK]
    assert "ed25519 key published at ed1._domainkey.test.example and matches" in findings[1].message


def test_dns_that_does_not_answer_is_a_lookup_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        resolver = DnsResolver(("127.0.0.1", silent.getsockname()[1]), timeout=0.5)
        with pytest.raises(DnsLookupError, match="cannot look up"):
            resolver.txt("example.org")


@pytest.mark.parametrize(
    ("published", "matches"),
    [
        ("v=DKIM1; k=rsa; p=MIIBIjAN", True),
        # k defaults to rsa, v may be left out, whitespace inside p= is ignored (RFC 6376 3.6.1)
        ("p=MIIB IjAN", True),
        ("v=DKIM1;k=rsa;p=MIIBIjAN;t=s", True),
        ("v=DKIM1; k=rsa; p=MIIBIjAX", False),
        ("v=DKIM1; k=ed25519; p=MIIBIjAN", False),
        ("v=DKIM2; k=rsa; p=MIIBIjAN", False),
        # an empty p= is a revoked key
        ("v=DKIM1; k=rsa; p=", False),
        ("v=spf1 -all", False),
    ],
)
def test_dkim_matches(published: str, matches: bool) -> None:
    assert dkim_matches(published, "v=DKIM1; k=rsa; p=MIIBIjAN") is matches


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("ns1.example.net", ("ns1.example.net", 53)),
        ("192.0.2.53:5353", ("192.0.2.53", 5353)),
        ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_nameserver_option(value: str, parsed: tuple[str, int]) -> None:
    assert parse_nameserver(value) == parsed


@pytest.mark.parametrize("value", ["", ":53", "host:", "host:http", "host:70000", "[::1]:x"])
def test_nameserver_option_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(value)


def test_tags() -> None:
    assert tags(" v=DKIM1 ; k = rsa; p=ab cd\t ef ;") == {"v": "DKIM1", "k": "rsa", "p": "abcdef"}


def test_verdict_is_failure_only_for_fail() -> None:
    warn = Finding("x", Status.WARN, "w")
    assert verdict([Finding("x", Status.OK, "o"), warn]) == 0
    assert verdict([warn, Finding("y", Status.FAIL, "f")]) == 1


def test_diagnose_is_usable_without_the_cli(deployment: Deployment) -> None:
    settings = load_settings(
        deployment.config(),
        environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET, "NEWSLETTER_SMTP_PASSWORD": PASSWORD},
    )
    context = ssl.create_default_context(cafile=str(deployment.pki.ca_cert))
    findings = diagnose(
        settings,
        environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET},
        dns=DnsResolver(("127.0.0.1", deployment.zone.port), timeout=5),
        https_context=context,
        timeout=5,
    )
    assert verdict(findings) == 0, findings
    assert all(f.status is Status.OK for f in findings), findings


# --- helpers -----------------------------------------------------------------------------


def _bare(tmp_path: Path) -> Deployment:
    """A deployment's config writer with nothing running behind it."""
    key = tmp_path / "dkim.pem"
    if not key.exists():
        key.write_bytes(
            rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    root = tmp_path / "bare"
    root.mkdir(exist_ok=True)
    return Deployment(
        root=root,
        pki=Pki(tmp_path / "ca.pem", tmp_path / "s.pem", tmp_path / "s.key"),
        relay=SMTPServer(RecordingHandler(), port=free_port()),
        zone=None,  # type: ignore[arg-type]
        dkim_key=key,
        dkim_p="",
        site_port=free_port(),
        receiver_port=free_port(),
        database=tmp_path / "bare.db",
    )


def _settings(tmp_path: Path, **environ: str) -> Settings:
    config = _bare(tmp_path).config(ca_file=False)
    return load_settings(config, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET, **environ})
