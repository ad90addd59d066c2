"""How the project's mail gets its DKIM signatures: issue copies beside the event loop, the rest
one by one, with keys read once per process and again when their files change.

:class:`IssueSigner` is what the delivery engine's ``MessageSigner`` is in production
(``sending.engine_for``); :func:`sign_single` is the hook in ``transport.send_single`` that every
other message goes through (test copies, confirmations, the editor's reports and notices,
preview test sends). The signing itself is :mod:`newsletter.dkim`'s (pure).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from newsletter.config import Dkim
from newsletter.dkim import BodyPiece, HeaderPiece, Signer, SigningTemplate, Slot
from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.message import MessageTemplate, Personalization


class IssueSigner:
    """Signs the copies of an issue a send delivers, in a small thread pool beside the loop.

    Per issue (per :class:`~newsletter.message.MessageTemplate`, and per set of header names,
    which is the same for every recipient of a send) one :class:`SigningTemplate` is built from
    the template's layout; per recipient :meth:`sign` renders the copy on the caller's thread
    (cheap: a bytes join) and leaves the signature to a worker thread, so the event loop keeps
    sending while the keys work. The signature is computed over the copy before SMTP's dot
    doubling, and goes in front of the doubled bytes unchanged (it has no line starting with a
    dot).
    """

    def __init__(self, signer: Signer, *, threads: int | None = None) -> None:
        self.signer = signer
        self._threads = threads or min(4, os.cpu_count() or 1)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # per template, per tuple of header names: the signing template and which header
        # lines (by index) fill which of its slots
        self._templates: weakref.WeakKeyDictionary[
            MessageTemplate, dict[tuple[str, ...], tuple[SigningTemplate, list[tuple[int, str]]]]
        ] = weakref.WeakKeyDictionary()

    @classmethod
    def from_config(cls, config: Dkim) -> IssueSigner | None:
        """The issue signer for ``[dkim]`` (None when it is not configured); the keys are
        read once per process and again when a key file changes (:func:`signer_for`)."""
        signer = signer_for(config)
        return None if signer is None else cls(signer)

    def sign(
        self, template: MessageTemplate, person: Personalization
    ) -> tuple[bytes, Future[bytes]]:
        """The recipient's copy, dot-doubled for DATA, and its ``DKIM-Signature`` header(s)
        to come: put those in front of it. Bad data (a header that cannot be written) raises
        here; a key that fails to sign is a :class:`ConfigError` from the future."""
        signable = template.signable(person)
        headers = signable.headers
        signing, personal = self._template_for(template, headers)
        values: dict[str, bytes] = dict(signable.values)
        for index, slot in personal:
            values[slot] = headers[index][1]
        return signable.data, self._pool().submit(_signature, signing, values)

    def close(self) -> None:
        """Stop the threads (signatures already asked for are still made)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="dkim")
            return self._executor

    def _template_for(
        self, template: MessageTemplate, headers: Sequence[tuple[str, bytes]]
    ) -> tuple[SigningTemplate, list[tuple[int, str]]]:
        """The signing template for copies with these header names, and which header lines
        (by index) fill which slot."""
        names = tuple(name for name, _ in headers)
        shapes = self._templates.get(template)
        if shapes is None:
            shapes = self._templates[template] = {}
        found = shapes.get(names)
        if found is None:
            layout, body = template.signing_layout(headers)
            header_pieces: list[HeaderPiece] = [
                (name, Slot(_HEADER_SLOT + name.lower()) if line is None else line)
                for name, line in layout
            ]
            body_pieces: list[BodyPiece] = [
                Slot(piece) if isinstance(piece, str) else piece for piece in body
            ]
            personal = [
                (index, _HEADER_SLOT + name.lower())
                for index, (name, line) in enumerate(layout)
                if line is None
            ]
            found = shapes[names] = (self.signer.template(header_pieces, body_pieces), personal)
        return found


# header slots are named apart from the bodies' placeholders
_HEADER_SLOT = "header:"


def _signature(signing: SigningTemplate, values: Mapping[str, bytes]) -> bytes:
    try:
        return signing.signature(values)
    except ValueError as exc:
        raise ConfigError("dkim", f"cannot sign the message: {exc}") from None


_single_lock = threading.Lock()
_single_cache: dict[Dkim, tuple[tuple[int, int, int, int] | None, Signer]] = {}


def signer_for(config: Dkim) -> Signer | None:
    """The :class:`Signer` ``[dkim]`` describes, read again only when a key file changed (a
    long-running web server or scheduler picks up a rotated key without a restart)."""
    if not config.enabled:
        return None
    stamp = _stamp(config)
    with _single_lock:
        cached = _single_cache.get(config)
        if cached is not None and cached[0] == stamp and stamp is not None:
            return cached[1]
    signer = Signer.from_config(config)
    if signer is None:
        return None
    with _single_lock:
        _single_cache[config] = (stamp, signer)
    return signer


def _stamp(config: Dkim) -> tuple[int, int, int, int] | None:
    try:
        rsa_stat = config.key_path.stat() if config.key_path else None
        ed_stat = config.ed25519_key_path.stat() if config.ed25519_key_path else None
    except OSError:
        return None  # read it again: from_config says what is wrong with it
    return (
        rsa_stat.st_mtime_ns if rsa_stat else 0,
        rsa_stat.st_size if rsa_stat else 0,
        ed_stat.st_mtime_ns if ed_stat else 0,
        ed_stat.st_size if ed_stat else 0,
    )


def sign_single(config: Dkim, message: bytes) -> bytes:
    """``message`` (CRLF bytes) signed as ``[dkim]`` says, or as it is when DKIM is off: the
    one hook every message outside a bulk send goes through (confirmations, test copies,
    reports)."""
    signer = signer_for(config)
    if signer is None:
        return message
    try:
        return signer.sign(message)
    except ValueError as exc:
        raise ConfigError("dkim", f"cannot sign the message: {exc}") from None
