"""Amazon SNS message authentication: the signature over an SNS message and its signing certificate.

SES reports bounces and complaints through an SNS topic that POSTs JSON to ``/webhooks/ses``.
Anyone can POST such JSON, so a message counts only when:

1. its ``SigningCertURL`` (and a confirmation's ``SubscribeURL``) is ``https://sns.<region>
   .amazonaws.com/...``: an attacker cannot point us at a certificate of their own;
2. that certificate, fetched through the :data:`Fetcher` handed in (tests hand in their own, so
   nothing here needs the network), chains to a trusted root and is issued to
   ``sns.amazonaws.com``;
3. its ``Signature`` verifies under that certificate's key over the fields SNS signs, in SNS's
   order (SHA1withRSA for ``SignatureVersion`` 1, SHA256withRSA for 2);
4. its ``Timestamp`` is recent and its ``TopicArn`` is one we subscribed to (the caller checks).

Pure apart from the fetcher; certificates are cached per URL.
"""

from __future__ import annotations

import base64
import re
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

#: fetches a URL (GET) and returns the body; the real one verifies TLS and has a timeout
Fetcher = Callable[[str], bytes]

# sns.<region>.amazonaws.com (and the China partition); nothing else is ever fetched
_SNS_URL = re.compile(
    r"https://sns\.[a-z0-9-]{1,30}\.amazonaws\.com(?:\.cn)?/[^\s?#]*(?:\?[^\s#]*)?"
)
_CERT_PATH = re.compile(r"/SimpleNotificationService-[A-Za-z0-9]{1,64}\.pem")
SNS_SIGNER_NAME = "sns.amazonaws.com"

_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


class SnsError(Exception):
    """The message is not authentic (the web layer answers 403); ``reason`` is for the log."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def is_sns_url(url: str) -> bool:
    """Whether ``url`` is an https URL on an SNS regional host."""
    return _SNS_URL.fullmatch(url) is not None


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs: ``name\\nvalue\\n`` for each signed field present, in SNS's order."""
    kind = message.get("Type")
    if kind == "Notification":
        names: Sequence[str] = _NOTIFICATION_FIELDS
    elif kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        names = _CONFIRMATION_FIELDS
    else:
        raise SnsError(f"unknown SNS message type {kind!r}")
    out = []
    for name in names:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise SnsError(f"the SNS message has no {name}")
        if not isinstance(value, str):
            raise SnsError(f"{name} is not a string")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


@dataclass
class SnsVerifier:
    """Checks SNS messages against certificates fetched from SNS and trusted ``roots``."""

    fetch: Fetcher
    roots: Sequence[x509.Certificate]
    signer_name: str = SNS_SIGNER_NAME
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _cache: dict[str, x509.Certificate] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def verify(self, message: Mapping[str, Any]) -> None:
        """Raise :class:`SnsError` unless ``message`` is signed by SNS."""
        url = message.get("SigningCertURL") or message.get("SigningCertUrl")
        if not isinstance(url, str) or not is_sns_url(url):
            raise SnsError("the signing certificate URL is not on an SNS host")
        if not _CERT_PATH.fullmatch(url.split("amazonaws.com", 1)[1].removeprefix(".cn")):
            raise SnsError("the signing certificate URL is not an SNS certificate")
        version = message.get("SignatureVersion")
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()  # noqa: S303 (what SNS signs with in version 1)
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise SnsError(f"unknown SignatureVersion {version!r}")
        signature = message.get("Signature")
        if not isinstance(signature, str):
            raise SnsError("no signature")
        try:
            raw = base64.b64decode(signature, validate=True)
        except ValueError:
            raise SnsError("the signature is not base64") from None
        key = self._certificate(url).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsError("the signing certificate has no RSA key")
        try:
            key.verify(raw, string_to_sign(message), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SnsError("the signature does not verify") from None

    def _certificate(self, url: str) -> x509.Certificate:
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None and cached.not_valid_after_utc > self.clock():
            return cached
        try:
            pem = self.fetch(url)
        except Exception as exc:  # the fetcher's errors: network, HTTP, TLS
            raise SnsError(f"cannot fetch the signing certificate: {exc}") from None
        try:
            chain = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise SnsError("the signing certificate is not PEM") from None
        leaf, intermediates = chain[0], chain[1:]
        if not self.roots:
            raise SnsError("no trusted roots to check the signing certificate against")
        verifier = (
            PolicyBuilder()
            .store(Store(list(self.roots)))
            .time(self.clock())
            .build_server_verifier(x509.DNSName(self.signer_name))
        )
        try:
            verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            raise SnsError(f"the signing certificate does not verify: {exc}") from None
        with self._lock:
            self._cache[url] = leaf
        return leaf


def system_roots(ca_file: Path | None = None) -> list[x509.Certificate]:
    """The system's trusted roots (OpenSSL's default CA file), plus ``ca_file``."""
    import warnings

    from cryptography.utils import CryptographyDeprecationWarning

    roots: list[x509.Certificate] = []
    for path in (ssl.get_default_verify_paths().cafile, ca_file):
        if path is None:
            continue
        with warnings.catch_warnings():
            # a system bundle may hold an old root with a negative serial; it is not ours to fix
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                roots += x509.load_pem_x509_certificates(Path(path).read_bytes())
            except (OSError, ValueError):
                continue
    return roots


def https_fetcher(timeout: float = 10.0) -> Fetcher:
    """GET over verified TLS, at most 64 KiB (a certificate or a confirmation answer)."""
    import urllib.request

    context = ssl.create_default_context()

    def fetch(url: str) -> bytes:
        if not is_sns_url(url):
            raise SnsError("refusing to fetch a URL that is not on an SNS host")
        request = urllib.request.Request(url, headers={"User-Agent": "newsletter"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return bytes(response.read(64 * 1024))

    return fetch
