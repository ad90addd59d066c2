"""``[dkim]``: alignment with the From domain, the Ed25519 keys, and keys that do not load."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dkim import dknewkey

from newsletter.config import Dkim, Settings, load_settings
from newsletter.dkim import Signer, load_private_key, txt_record
from newsletter.errors import ConfigError
from tests.conftest import TEST_SECRET, write_config

MESSAGE = (
    b"From: The Test Weekly <weekly@test.example>\r\nTo: a@example.org\r\n"
    b"Subject: hi\r\nDate: Fri, 20 Nov 2026 11:00:00 +0000\r\n\r\nHello.\r\n"
)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, fmt: serialization.PrivateFormat
) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def project(tmp_path: Path) -> Path:
    """Where the config file goes; key paths in it are relative to it."""
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    return root


def configure(tmp_path: Path, dkim_table: str, *, sender: str | None = None) -> Settings:
    root = project(tmp_path)
    path = write_config(root, database_url=f"sqlite:///{tmp_path / 'n.db'}")
    text = path.read_text(encoding="utf-8")
    if sender is not None:
        text = text.replace(
            'sender = "The Test Weekly <weekly@test.example>"', f'sender = "{sender}"'
        )
    path.write_text(text + "\n[dkim]\n" + dkim_table, encoding="utf-8")
    return load_settings(path, environ={"NEWSLETTER_SECRET_KEY": TEST_SECRET})


def verifies(signed: bytes, signer: Signer, index: int = 0) -> bool:
    records = {f"{r.name}.".encode(): r.value.encode() for r in signer.dns_records()}
    try:
        return bool(
            dkim.DKIM(signed).verify(idx=index, dnsfunc=lambda name, timeout=5: records.get(name))
        )
    except dkim.DKIMException:
        return False


# --- alignment --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "sender"),
    [
        ("test.example", None),
        ("TEST.example.", None),
        ("test.example", "News <news@mail.test.example>"),
        ("mail.test.example", "News <news@mail.test.example>"),
    ],
)
def test_the_from_domain_or_a_parent_of_it_is_accepted(
    tmp_path: Path, domain: str, sender: str | None
) -> None:
    settings = configure(
        tmp_path, f'key_path = "k.pem"\nselector = "news"\ndomain = "{domain}"\n', sender=sender
    )
    assert settings.dkim.domain == domain


@pytest.mark.parametrize(
    ("domain", "sender"),
    [
        ("other.example", None),
        ("xtest.example", None),
        ("mail.test.example", None),
        ("test.example", "News <news@test.example.org>"),
    ],
)
def test_a_domain_that_does_not_align_with_from_names_dkim_domain(
    tmp_path: Path, domain: str, sender: str | None
) -> None:
    table = f'key_path = "k.pem"\nselector = "news"\ndomain = "{domain}"\n'
    with pytest.raises(ConfigError) as caught:
        configure(tmp_path, table, sender=sender)
    assert caught.value.key == "dkim.domain"
    assert "dkim.allow_unaligned = true" in str(caught.value)
    assert "publication.sender" in str(caught.value)
    # the opt-out for a relay that signs for other domains
    opted = configure(tmp_path, table + "allow_unaligned = true\n", sender=sender)
    assert opted.dkim.allow_unaligned


def test_a_top_level_domain_is_refused_even_unaligned(tmp_path: Path) -> None:
    table = 'key_path = "k.pem"\nselector = "news"\ndomain = "example"\nallow_unaligned = true\n'
    with pytest.raises(ConfigError, match=r"dkim\.domain.*top-level"):
        configure(tmp_path, table)


def test_an_internationalised_from_domain_aligns_in_its_ascii_form(tmp_path: Path) -> None:
    settings = configure(
        tmp_path,
        'key_path = "k.pem"\nselector = "news"\ndomain = "xn--bcher-kva.example"\n',
        sender="Bücher <news@bücher.example>",
    )
    assert settings.dkim.domain == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('key_path = "k.pem"\nselector = "news"\n', "dkim"),
        (
            'key_path = "k.pem"\nselector = "bad selector"\ndomain = "test.example"\n',
            "dkim.selector",
        ),
        ('key_path = "k.pem"\nselector = "news"\ndomain = "te st.example"\n', "dkim.domain"),
        ('ed25519_key_path = "e.key"\ned25519_selector = "ed"\n', "dkim.ed25519_key_path"),
        (
            'key_path = "k.pem"\nselector = "news"\ndomain = "test.example"\n'
            'ed25519_key_path = "e.key"\n',
            "dkim.ed25519_selector",
        ),
        (
            'key_path = "k.pem"\nselector = "news"\ndomain = "test.example"\n'
            'ed25519_key_path = "e.key"\ned25519_selector = "NEWS"\n',
            "dkim.ed25519_selector",
        ),
    ],
    ids=[
        "no-domain",
        "selector",
        "domain",
        "ed25519-alone",
        "ed25519-no-selector",
        "same-selector",
    ],
)
def test_incomplete_or_malformed_dkim_tables_name_the_key(
    tmp_path: Path, table: str, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        configure(tmp_path, table)
    assert caught.value.key == key


def test_not_configured_means_no_signer(tmp_path: Path) -> None:
    settings = configure(tmp_path, "")
    assert Signer.from_config(settings.dkim) is None


# --- keys ------------------------------------------------------------------------------------


def test_rsa_keys_load_from_pkcs1_and_pkcs8_pem(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    for fmt in (serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8):
        (project(tmp_path) / "k.pem").write_bytes(pem(rsa_key, fmt))
        settings = configure(
            tmp_path, 'key_path = "k.pem"\nselector = "news"\ndomain = "test.example"\n'
        )
        signer = Signer.from_config(settings.dkim)
        assert signer is not None
        assert verifies(signer.sign(MESSAGE), signer)


def test_an_openssl_generated_key_loads(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key = tmp_path / "k.pem"
    subprocess.run([openssl, "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    signer = Signer.from_config(Dkim(key, "news", "test.example"))
    assert signer is not None
    public = subprocess.run(
        [openssl, "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    # the record is what `openssl rsa -pubout` gives, the form every DKIM guide publishes
    assert signer.dns_records()[0].value == "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def test_ed25519_keys_load_from_dkimpy_seed_and_pkcs8(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    root = project(tmp_path)
    (root / "k.pem").write_bytes(pem(rsa_key, serialization.PrivateFormat.PKCS8))
    # dkimpy's own key generator writes the base64 seed; its DNS record must equal ours
    seed_key = dknewkey.GenEd25519Keys(str(root / "seed.key"), verbose=False)
    dknewkey.ExtractEd25519PublicKey(str(root / "seed.dns"), seed_key, verbose=False)
    pkcs8 = ed25519.Ed25519PrivateKey.generate()
    (root / "pkcs8.pem").write_bytes(pem(pkcs8, serialization.PrivateFormat.PKCS8))
    for name in ("seed.key", "pkcs8.pem"):
        table = (
            'key_path = "k.pem"\nselector = "news"\ndomain = "test.example"\n'
            f'ed25519_key_path = "{name}"\ned25519_selector = "ed"\n'
        )
        signer = Signer.from_config(configure(tmp_path, table).dkim)
        assert signer is not None
        assert [key.kind for key in signer.keys] == ["rsa", "ed25519"]
        signed = signer.sign(MESSAGE)
        assert verifies(signed, signer, 0)
        assert verifies(signed, signer, 1)
        if name == "seed.key":
            assert signer.dns_records()[1].value == (root / "seed.dns").read_text()


def write_key(tmp_path: Path, data: bytes) -> Dkim:
    (tmp_path / "k.pem").write_bytes(data)
    return Dkim(tmp_path / "k.pem", "news", "test.example")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", "not a PEM"),
        (b"MC4CAQAwBQYDK2VwBCIEIA==", "not a PEM private key"),
    ],
    ids=["empty", "garbage-pem", "not-pem"],
)
def test_an_rsa_key_that_does_not_load_names_dkim_key_path(
    tmp_path: Path, data: bytes, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Signer.from_config(write_key(tmp_path, data))
    assert caught.value.key == "dkim.key_path"


def test_wrong_kinds_of_keys_are_refused(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    ed = pem(ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8)
    with pytest.raises(ConfigError, match="expected an RSA key, found an Ed25519 key"):
        Signer.from_config(write_key(tmp_path, ed))
    ecdsa = pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    with pytest.raises(ConfigError, match="expected an RSA key"):
        Signer.from_config(write_key(tmp_path, ecdsa))
    openssl = shutil.which("openssl")
    if openssl is not None:
        # cryptography will not make a key this small; OpenSSL still does
        small = subprocess.run([openssl, "genrsa", "768"], check=True, capture_output=True).stdout
        with pytest.raises(ConfigError, match=r"768 bits .*RFC 8301"):
            Signer.from_config(write_key(tmp_path, small))
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(ConfigError, match="encrypted"):
        Signer.from_config(write_key(tmp_path, encrypted))
    rsa_pem = pem(rsa_key, serialization.PrivateFormat.PKCS8)
    with pytest.raises(ConfigError) as caught:
        load_private_key(rsa_pem, "ed25519", config_key="dkim.ed25519_key_path")
    assert caught.value.key == "dkim.ed25519_key_path"
    assert "expected an Ed25519 key, found an RSA key" in str(caught.value)
    with pytest.raises(ConfigError, match="32-byte seed") as caught:
        load_private_key(b"c2hvcnQ=", "ed25519", config_key="dkim.ed25519_key_path")
    assert caught.value.key == "dkim.ed25519_key_path"


def test_a_missing_key_file_names_its_key(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*missing\.pem") as caught:
        Signer.from_config(Dkim(tmp_path / "missing.pem", "news", "test.example"))
    assert caught.value.key == "dkim.key_path"
    (tmp_path / "k.pem").write_bytes(pem(rsa_key, serialization.PrivateFormat.PKCS8))
    with pytest.raises(ConfigError) as caught:
        Signer.from_config(
            Dkim(
                tmp_path / "k.pem",
                "news",
                "test.example",
                ed25519_key_path=tmp_path / "missing.key",
                ed25519_selector="ed",
            )
        )
    assert caught.value.key == "dkim.ed25519_key_path"


def test_txt_record_for_each_kind(rsa_key: rsa.RSAPrivateKey) -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    raw = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert txt_record(ed.public_key()) == "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode()
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert txt_record(rsa_key.public_key()) == "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
