"""DKIM signing (RFC 6376, RFC 8463): relaxed/relaxed, rsa-sha256 and ed25519-sha256.

Pure: keys in, signature headers out; only :meth:`Signer.from_config` reads key files. Two ways in:

- :meth:`Signer.sign` signs one finished message (confirmations, test copies, reports).
- :meth:`Signer.template` takes a message as pieces, most of them the same for every recipient
  and some (:class:`Slot`) filled per recipient. Static header lines are canonicalised once, and
  the body is canonicalised and hashed once up to the first slot; per recipient only a copy of
  that SHA-256 state is taken and the rest fed to it (the static pieces after a slot already in
  canonical form). :meth:`SigningTemplate.signature` is thread-safe and holds no lock, and both
  ``hashlib`` (on large inputs) and ``cryptography`` release the GIL, so a send can sign in a
  small thread pool (:meth:`SigningTemplate.signatures`) while the event loop keeps sending.

Every signature oversigns the headers a forwarder could add a second copy of (:data:`OVERSIGNED`):
``h=`` names each once more than it occurs, so an added copy breaks the signature.

How the project's mail uses it (issue copies in threads beside the event loop, every other
message in ``transport.send_single``, keys read again when their files change):
:mod:`newsletter.dkim_signers`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import idna
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from newsletter.config import Dkim
from newsletter.errors import ConfigError

# Signed and oversigned: a second copy added on the way (a forwarder's, or an attacker's "From"
# above ours) breaks the signature. Both List-Unsubscribe headers among them: Gmail and Yahoo
# honour one-click unsubscribe only when a valid signature covers them (RFC 8058 section 4).
OVERSIGNED: tuple[str, ...] = (
    "from",
    "to",
    "subject",
    "date",
    "reply-to",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
# Signed where present, not oversigned: relays legitimately add none of these, but a missing
# one is no cause for a second copy to break the signature either.
SIGNED_IF_PRESENT: tuple[str, ...] = (
    "cc",
    "in-reply-to",
    "references",
    "sender",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "feedback-id",
    # our delivery token (inbound.verp): what a complaint names the delivery by
    "x-newsletter-delivery",
)
# RFC 8301: verifiers must refuse smaller RSA keys, so signing with one only fails later
MIN_RSA_BITS = 1024

_PKCS1 = padding.PKCS1v15()
_PREHASHED = utils.Prehashed(hashes.SHA256())
_WSP_RUN = re.compile(rb"[ \t]+")
_SPACES = re.compile(rb"  +")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_FOLD_AT = 76

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey
KeyKind = Literal["rsa", "ed25519"]


@dataclass(frozen=True)
class Slot:
    """A per-recipient piece of a message template, filled by name."""

    name: str


#: A header of a template: its lower- or mixed-case name, and its raw folded line (name, colon,
#: value, CRLF) or a :class:`Slot` filled with such a line per recipient.
HeaderPiece = tuple[str, "bytes | Slot"]
BodyPiece = bytes | Slot


@dataclass(frozen=True)
class DnsRecord:
    """The TXT record that publishes one signing key."""

    name: str
    value: str

    def zone_line(self) -> str:
        """The record as a zone-file line; split into strings of at most 255 characters each
        (RFC 1035), which resolvers join again."""
        chunks = [self.value[i : i + 255] for i in range(0, len(self.value), 255)]
        quoted = " ".join(f'"{chunk}"' for chunk in chunks)
        return f"{self.name}. IN TXT ( {quoted} )"


@dataclass(frozen=True)
class SigningKey:
    """One private key and the selector under which its public half is published."""

    selector: str
    # a secret: kept out of repr, so logging a signer never shows it
    private_key: PrivateKey = field(repr=False)

    @property
    def kind(self) -> KeyKind:
        return "ed25519" if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else "rsa"

    @property
    def algorithm(self) -> bytes:
        return b"ed25519-sha256" if self.kind == "ed25519" else b"rsa-sha256"

    def txt_record(self) -> str:
        return txt_record(self.private_key.public_key())

    def sign_digest(self, digest: bytes) -> bytes:
        """The signature over a SHA-256 digest of the canonical headers (RFC 8463: Ed25519
        signs the digest, not the headers)."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(digest)
        return self.private_key.sign(digest, _PKCS1, _PREHASHED)


def txt_record(public_key: PublicKey) -> str:
    """The DNS TXT value to publish at ``<selector>._domainkey.<domain>`` for ``public_key``."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def load_private_key(data: bytes, kind: KeyKind, *, config_key: str) -> PrivateKey:
    """A private key from PEM (RSA: PKCS#1 or PKCS#8; Ed25519: PKCS#8) or, for Ed25519, the
    base64 32-byte seed dkimpy's ``dknewkey`` writes. Anything else is a :class:`ConfigError`
    naming ``config_key``."""
    stripped = data.strip()
    if kind == "ed25519" and not stripped.startswith(b"-----"):
        try:
            seed = base64.b64decode(stripped, validate=True)
        except ValueError:
            seed = b""
        if len(seed) != 32:
            raise ConfigError(
                config_key,
                "not an Ed25519 private key: expected PKCS#8 PEM or the base64 32-byte seed",
            )
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    try:
        key = serialization.load_pem_private_key(stripped, password=None)
    except TypeError:
        raise ConfigError(
            config_key,
            "the key is encrypted; DKIM keys are read without a passphrase "
            "(write a decrypted copy with: openssl pkey -in KEY -out KEY.plain)",
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        expected = "RSA (PKCS#1 or PKCS#8)" if kind == "rsa" else "Ed25519 (PKCS#8)"
        raise ConfigError(config_key, f"not a PEM private key of type {expected}: {exc}") from None
    if kind == "rsa":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(config_key, f"expected an RSA key, found {_describe(key)}")
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                config_key,
                f"an RSA key of {key.key_size} bits is refused by verifiers (RFC 8301); "
                "use 2048 bits",
            )
        return key
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(config_key, f"expected an Ed25519 key, found {_describe(key)}")
    return key


def _describe(key: object) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "an Ed25519 key"
    if isinstance(key, rsa.RSAPrivateKey):
        return "an RSA key"
    return "a key of another type (" + type(key).__name__.lstrip("_") + ")"


def read_private_key(path: Path, kind: KeyKind, *, config_key: str) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(config_key, f"cannot read {path}: {exc.strerror or exc}") from None
    return load_private_key(data, kind, config_key=config_key)


def split_message(message: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """A CRLF message as its header lines (name, raw folded line) and its body."""
    if message.startswith(b"\r\n"):
        return [], message[2:]
    end = message.find(b"\r\n\r\n")
    if end < 0:
        block, body = message, b""
    else:
        block, body = message[: end + 2], message[end + 4 :]
    return split_headers(block), body


def split_headers(block: bytes) -> list[tuple[str, bytes]]:
    """Header lines, each with its continuation lines, as (name, raw line ending in CRLF)."""
    headers: list[tuple[str, bytes]] = []
    lines = block.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        if line[:1] in (b" ", b"\t") and headers:
            previous, raw = headers[-1]
            headers[-1] = (previous, raw + line + b"\r\n")
            continue
        name_bytes, colon, _ = line.partition(b":")
        name = name_bytes.rstrip(b" \t")
        if not colon or not name or not name.isascii() or b" " in name or b"\t" in name:
            raise ValueError(f"not a header line: {line[:60]!r}")
        headers.append((name.decode("ascii"), line + b"\r\n"))
    return headers


def canonical_header(line: bytes) -> bytes:
    """One raw header line in relaxed canonical form (RFC 6376 section 3.4.2), with CRLF."""
    name, _, value = line.partition(b":")
    value = _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def canonical_body_lines(data: bytes) -> bytes:
    """Complete body lines in relaxed canonical form (RFC 6376 section 3.4.4), before the
    rule about empty lines at the end."""
    # a tab becomes a space, then runs of spaces one space: the same as compressing WSP runs,
    # and three times faster than one regular expression for both (a literal prefix to scan for)
    if b"\t" in data:
        data = data.replace(b"\t", b" ")
    data = _SPACES.sub(b" ", data)
    # after compression a line ends in at most one space
    return data.replace(b" \r\n", b"\r\n")


def _trailing_empty_lines(canon: bytes) -> tuple[int, int]:
    """(end of the content, number of empty lines after it) in canonical complete lines."""
    end = len(canon)
    empty = 0
    while end >= 2 and canon.endswith(b"\r\n", 0, end):
        if end == 2 or canon.endswith(b"\r\n", 0, end - 2):
            end -= 2
            empty += 1
        else:
            break
    return end, empty


class _BodyHash:
    """Streaming relaxed body canonicalisation into SHA-256.

    Holds back the incomplete last line (its whitespace may continue in the next piece) and the
    empty lines seen last (dropped if the body ends with them, written if text follows).
    """

    __slots__ = ("empty", "partial", "sha")

    def __init__(self, sha: hashlib._Hash, partial: bytes = b"", empty: int = 0) -> None:
        self.sha = sha
        self.partial = partial
        self.empty = empty

    def copy(self) -> _BodyHash:
        return _BodyHash(self.sha.copy(), self.partial, self.empty)

    def feed(self, data: bytes) -> None:
        if self.partial:
            data = self.partial + data
        cut = data.rfind(b"\r\n") + 2
        if cut < 2:
            self.partial = data
            return
        self.partial = data[cut:]
        complete = data[:cut]
        # a per-recipient value is mostly a URL or a token: no whitespace to canonicalise, and
        # (the last line of text before it ending the data) no empty line at its end
        if b" " in complete or b"\t" in complete or complete.endswith(b"\r\n\r\n") or cut == 2:
            complete = canonical_body_lines(complete)
            end, empty = _trailing_empty_lines(complete)
            self.lines(complete[:end], empty)
        else:
            self.lines(complete, 0)

    def lines(self, content: bytes, empty: int) -> None:
        """Canonical complete lines: ``content`` (not ending in an empty line) then ``empty``
        empty lines."""
        if content:
            if self.empty:
                self.sha.update(b"\r\n" * self.empty)
            self.sha.update(content)
            self.empty = empty
        else:
            self.empty += empty

    def digest(self) -> bytes:
        if self.partial:
            # implementations differ on a last line without CRLF (dkimpy keeps its trailing
            # space); SMTP ends the message with one anyway, so sign what will arrive
            raise ValueError("the body must end with CRLF, as SMTP sends it")
        return self.sha.digest()


# per-recipient body steps after the first slot: fill a slot, feed raw bytes, or feed lines
# canonicalised when the template was built
_Step = (
    tuple[Literal["slot"], str] | tuple[Literal["raw"], bytes] | tuple[Literal["lines"], bytes, int]
)


def _compile_body(body: Sequence[BodyPiece]) -> tuple[_BodyHash, list[_Step], frozenset[str]]:
    merged: list[BodyPiece] = []
    for piece in body:
        previous = merged[-1] if merged else None
        if isinstance(piece, bytes) and isinstance(previous, bytes):
            merged[-1] = previous + piece
        elif isinstance(piece, Slot) or piece:
            merged.append(piece)
    start = _BodyHash(hashlib.sha256())
    steps: list[_Step] = []
    slots: set[str] = set()
    for piece in merged:
        if isinstance(piece, Slot):
            steps.append(("slot", piece.name))
            slots.add(piece.name)
        elif not steps:
            start.feed(piece)
        else:
            first = piece.find(b"\r\n") + 2
            last = piece.rfind(b"\r\n") + 2
            if first < 2:
                steps.append(("raw", piece))
                continue
            # the first line may continue a slot's line; the lines after it are the same for
            # every recipient and go in canonical form; the tail starts the next line
            steps.append(("raw", piece[:first]))
            if last > first:
                canon = canonical_body_lines(piece[first:last])
                end, empty = _trailing_empty_lines(canon)
                steps.append(("lines", canon[:end], empty))
            if last < len(piece):
                steps.append(("raw", piece[last:]))
    return start, steps, frozenset(slots)


def _signed_names(present: Iterable[str]) -> list[str]:
    """``h=``: oversigned names once more than they occur, the others as often as they do."""
    counts: dict[str, int] = {}
    for name in present:
        counts[name] = counts.get(name, 0) + 1
    names: list[str] = []
    for name in OVERSIGNED:
        names += [name] * (counts.get(name, 0) + 1)
    for name in SIGNED_IF_PRESENT:
        names += [name] * counts.get(name, 0)
    return names


def _fold_list(prefix: bytes, items: Sequence[bytes], sep: bytes) -> bytes:
    """``prefix`` and ``items`` joined by ``sep``, folded (CRLF TAB) before a line gets long."""
    out = prefix
    column = len(prefix)
    for index, item in enumerate(items):
        piece = item + (sep if index < len(items) - 1 else b"")
        if column + len(piece) > _FOLD_AT and column > 1:
            out += b"\r\n\t"
            column = 1
        out += piece
        column += len(piece)
    return out


class Signer:
    """Signs for one domain with an RSA key and optionally an Ed25519 key beside it."""

    def __init__(self, domain: str, keys: Sequence[SigningKey]) -> None:
        if not keys:
            raise ValueError("a signer needs at least one key")
        if len({key.selector.lower() for key in keys}) != len(keys):
            raise ValueError("each key needs its own selector")
        for key in keys:
            if not _SELECTOR.fullmatch(key.selector):
                raise ValueError(f"not a DNS name: selector {key.selector!r}")
        self.domain = ascii_domain(domain)
        # the RSA signature first: verifiers that check only the first one know RSA
        self.keys = tuple(sorted(keys, key=lambda key: key.kind != "rsa"))

    @classmethod
    def from_config(cls, config: Dkim) -> Signer | None:
        """The signer ``[dkim]`` describes (None when it is not configured); a key that cannot
        be read or loaded is a :class:`ConfigError` naming its key."""
        if config.key_path is None:
            return None
        if config.selector is None or config.domain is None:
            raise ConfigError("dkim", "key_path, selector and domain go together")
        keys = [
            SigningKey(
                config.selector,
                read_private_key(config.key_path, "rsa", config_key="dkim.key_path"),
            )
        ]
        if config.ed25519_key_path is not None:
            if config.ed25519_selector is None:
                raise ConfigError(
                    "dkim.ed25519_selector", "ed25519_key_path needs its own selector"
                )
            keys.append(
                SigningKey(
                    config.ed25519_selector,
                    read_private_key(
                        config.ed25519_key_path, "ed25519", config_key="dkim.ed25519_key_path"
                    ),
                )
            )
        return cls(config.domain, keys)

    def dns_records(self) -> list[DnsRecord]:
        """The TXT records receivers look the keys up in, one per key."""
        return [
            DnsRecord(f"{key.selector}._domainkey.{self.domain}", key.txt_record())
            for key in self.keys
        ]

    def template(
        self, headers: Sequence[HeaderPiece], body: Sequence[BodyPiece]
    ) -> SigningTemplate:
        """A message as pieces: headers in order, then the body; :class:`Slot` pieces are
        filled per recipient (a header slot with the whole raw line of that header)."""
        return SigningTemplate(self, headers, body)

    def signature(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """The ``DKIM-Signature`` header line(s) for a finished message: CRLF line endings,
        ending in CRLF."""
        headers, body = split_message(message)
        return self.template(headers, [body]).signature({}, timestamp=timestamp)

    def sign(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """``message`` with its ``DKIM-Signature`` header(s) in front; bare LF line endings
        become CRLF first and a missing final CRLF is added (as SMTP would send the message,
        and as the signature must cover it)."""
        if b"\n" in message and message.count(b"\n") != message.count(b"\r\n"):
            message = re.sub(rb"\r?\n", b"\r\n", message)
        if message and not message.endswith(b"\r\n"):
            message += b"\r\n"
        return self.signature(message, timestamp=timestamp) + message


_B_TAG = b";\r\n\tb="


@dataclass(frozen=True)
class _SignatureHead:
    """One key's DKIM-Signature header around t=, bh= and b=, as sent and in canonical form."""

    key: SigningKey
    head: bytes
    middle: bytes
    canon_head: bytes
    canon_middle: bytes
    canon_tail: bytes


class SigningTemplate:
    """One message's static pieces, canonicalised and partly hashed once; see the module doc."""

    def __init__(
        self, signer: Signer, headers: Sequence[HeaderPiece], body: Sequence[BodyPiece]
    ) -> None:
        self.signer = signer
        # what it was made from: the signer process builds its own copy from these
        self.headers = list(headers)
        self.body = list(body)
        self._headers = [(name.lower(), piece) for name, piece in headers]
        self._body = list(body)
        names = [name for name, _ in self._headers]
        if "from" not in names:
            raise ValueError("a message without From cannot be signed (RFC 6376 section 5.4)")
        signed = _signed_names(names)
        # h= picks instances from the bottom up (RFC 6376 section 5.4.2); a name listed more
        # often than it occurs adds nothing to the hash: that is what makes oversigning work
        seen: dict[str, int] = {}
        positions: dict[str, list[int]] = {}
        for index, name in enumerate(names):
            positions.setdefault(name, []).append(index)
        parts: list[bytes | Slot] = []
        header_slots: set[str] = set()
        for name in signed:
            nth = seen.get(name, 0)
            seen[name] = nth + 1
            found = positions.get(name, [])
            if nth >= len(found):
                continue
            piece = self._headers[found[-1 - nth]][1]
            if isinstance(piece, Slot):
                header_slots.add(piece.name)
            parts.append(piece if isinstance(piece, Slot) else canonical_header(piece))
        self._header_parts = parts
        self._header_names = {
            piece.name: name.encode("ascii")
            for name, piece in self._headers
            if isinstance(piece, Slot)
        }
        self._body_start, self._body_steps, body_slots = _compile_body(self._body)
        self.slots = frozenset(header_slots | body_slots | set(self._header_names))
        #: the slots in a fixed order, for :meth:`signature_of`
        self.slot_order = tuple(sorted(self.slots))
        self._static_bh = (
            None if self._body_steps else base64.b64encode(self._body_start.copy().digest())
        )
        h_value = _fold_list(b"h=", [name.encode("ascii") for name in signed], b":")
        self._sig_heads = [self._signature_head(key, h_value) for key in signer.keys]

    def _signature_head(self, key: SigningKey, h_value: bytes) -> _SignatureHead:
        head = b"DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s;\r\n\tt=" % (
            key.algorithm,
            self.signer.domain.encode("ascii"),
            key.selector.encode("ascii"),
        )
        middle = b";\r\n\t" + h_value + b";\r\n\tbh="
        # t= and bh= hold no whitespace, so the canonical form of the header is the canonical
        # pieces around them: worked out here once, with NULs standing in for the values
        canonical = canonical_header(head + b"\0" + middle + b"\0" + _B_TAG)[:-2]
        canon_head, canon_middle, canon_tail = canonical.split(b"\0")
        return _SignatureHead(key, head, middle, canon_head, canon_middle, canon_tail)

    def message(self, values: Mapping[str, bytes]) -> bytes:
        """The message these pieces make for one recipient (without the signature)."""
        head = b"".join(self._fill(piece, values) for _, piece in self._headers)
        return head + b"\r\n" + b"".join(self._fill(piece, values) for piece in self._body)

    def signature(self, values: Mapping[str, bytes], *, timestamp: int | None = None) -> bytes:
        """The ``DKIM-Signature`` header line(s) for one recipient: put them in front of
        :meth:`message` (or the same bytes rendered elsewhere, dot-stuffed or not)."""
        if self._static_bh is not None:
            bh = self._static_bh
        else:
            state = self._body_start.copy()
            for step in self._body_steps:
                if step[0] == "lines":
                    state.lines(step[1], step[2])
                elif step[0] == "raw":
                    state.feed(step[1])
                else:
                    try:
                        state.feed(values[step[1]])
                    except KeyError:
                        raise ValueError(f"no value for slot {step[1]!r}") from None
            bh = base64.b64encode(state.digest())
        canonical = hashlib.sha256(
            b"".join(
                part if isinstance(part, bytes) else self._header_line(part, values)
                for part in self._header_parts
            )
        )
        t = b"%d" % (int(time.time()) if timestamp is None else timestamp)
        out = []
        for sig in self._sig_heads:
            h = canonical.copy()
            # the signature header itself, b= empty and without its CRLF (section 3.7)
            h.update(sig.canon_head + t + sig.canon_middle + bh + sig.canon_tail)
            signature = base64.b64encode(sig.key.sign_digest(h.digest()))
            folded = b"\r\n\t".join(signature[i : i + 72] for i in range(0, len(signature), 72))
            out.append(sig.head + t + sig.middle + bh + _B_TAG + folded + b"\r\n")
        return b"".join(out)

    def signature_of(self, values: Sequence[bytes]) -> bytes:
        """:meth:`signature` with the values in :attr:`slot_order` (how the signer process
        gets them: a tuple pickles smaller and faster than a dict)."""
        if len(values) != len(self.slot_order):
            raise ValueError(f"{len(self.slot_order)} values needed, {len(values)} given")
        return self.signature(dict(zip(self.slot_order, values, strict=True)))

    def signatures(
        self,
        batch: Sequence[Mapping[str, bytes]],
        *,
        executor: Executor | None = None,
        timestamp: int | None = None,
    ) -> list[bytes]:
        """:meth:`signature` for each recipient in ``batch``, in order; across ``executor``'s
        threads when given."""
        if executor is None:
            return [self.signature(values, timestamp=timestamp) for values in batch]
        return list(executor.map(lambda values: self.signature(values, timestamp=timestamp), batch))

    def _fill(self, piece: bytes | Slot, values: Mapping[str, bytes]) -> bytes:
        if isinstance(piece, bytes):
            return piece
        try:
            return values[piece.name]
        except KeyError:
            raise ValueError(f"no value for slot {piece.name!r}") from None

    def _header_line(self, slot: Slot, values: Mapping[str, bytes]) -> bytes:
        """The slot's header line in canonical form, once it is known to be exactly one line
        of the header declared for it (anything else would make h= lie)."""
        line = self._fill(slot, values)
        name = self._header_names[slot.name]
        # the usual line, "Name: value" with single spaces, folded (if at all) before a single
        # space, is its own canonical form once unfolded, the name lower-cased and the space
        # after the colon gone
        head = len(name) + 2
        if (
            line[head - 2 : head] == b": "
            and line[: head - 2].lower() == name
            and line.endswith(b"\r\n")
        ):
            value = line[head:-2]
            if b"\r\n " in value:
                value = value.replace(b"\r\n ", b" ")
            if (
                b"\r" not in value
                and b"\n" not in value
                and b"  " not in value
                and b"\t" not in value
                and value[:1] != b" "
                and value[-1:] != b" "
            ):
                return name + b":" + value + b"\r\n"
        field, colon, value = line.partition(b":")
        value = value[:-2]
        folds = value.count(b"\r\n")
        unfolded = value.replace(b"\r\n", b"") if folds else value
        if (
            not colon
            or not line.endswith(b"\r\n")
            or field.rstrip(b" \t").lower() != name
            or b"\r" in unfolded
            or b"\n" in unfolded
            or (folds and folds != value.count(b"\r\n ") + value.count(b"\r\n\t"))
        ):
            raise ValueError(
                f"slot {slot.name!r} must hold one {name.decode()} header line ending in CRLF"
            )
        return name + b":" + _WSP_RUN.sub(b" ", unfolded).strip(b" ") + b"\r\n"


def ascii_domain(domain: str) -> str:
    """``domain`` lower-cased, in IDNA (``xn--``) form as ``d=`` needs it."""
    domain = domain.strip().rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"not a domain name: {domain!r} ({exc})") from None
    if not _SELECTOR.fullmatch(domain):
        raise ValueError(f"not a domain name: {domain!r}")
    return domain
