"""Where ``newsletter bounces import`` reads reports from: Maildir folders, mbox files, .eml files
and an IMAP mailbox.

Each source yields :class:`Item` s (a name to report and the message's bytes); the intake does
the rest. A file that cannot be read is an :class:`ImportFileError` naming it, raised only after
the messages before it were yielded, so nothing read is lost. IMAP always verifies the server's
certificate; the password comes from ``NEWSLETTER_IMAP_PASSWORD`` (settings), never the URL.
"""

from __future__ import annotations

import contextlib
import imaplib
import mailbox
import re
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from newsletter.errors import ConfigError, ImportFileError, TransportUnavailableError
from newsletter.transport import client_tls_context, parse_server_url


@dataclass(frozen=True)
class Item:
    """One message to take in: where it came from and its bytes."""

    name: str
    data: bytes


def local_items(paths: Iterable[Path]) -> Iterator[Item]:
    """Every message in ``paths``: Maildir folders (``new/`` and ``cur/``), mbox files, .eml."""
    for path in paths:
        if path.is_dir():
            yield from _maildir(path)
        elif _is_mbox(path):
            yield from _mbox(path)
        else:
            yield Item(path.name, _read(path))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read: {exc.strerror or exc}", path=path) from None


def _maildir(path: Path) -> Iterator[Item]:
    subdirs = [path / sub for sub in ("new", "cur") if (path / sub).is_dir()]
    if not subdirs:
        raise ImportFileError(
            "a folder but not a Maildir (no new/ or cur/ inside); name the Maildir itself",
            path=path,
        )
    for sub in subdirs:
        for file in sorted(sub.iterdir()):
            if file.is_file():
                yield Item(f"{sub.name}/{file.name}", _read(file))


def _is_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(5) == b"From "
    except OSError as exc:
        raise ImportFileError(f"cannot read: {exc.strerror or exc}", path=path) from None


def _mbox(path: Path) -> Iterator[Item]:
    box = mailbox.mbox(str(path), create=False)
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            yield Item(f"{path.name}#{number}", box.get_bytes(key))
    finally:
        box.close()


# --- IMAP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapSource:
    """``imaps://user@host[:993]/FOLDER`` or ``imap://user@host[:143]/FOLDER`` (STARTTLS)."""

    host: str
    port: int
    implicit_tls: bool
    user: str
    folder: str

    def __repr__(self) -> str:
        return f"ImapSource({self.user}@{self.host}:{self.port}/{self.folder})"


def parse_imap_url(url: str, *, user: str | None = None) -> ImapSource:
    """The mailbox ``url`` names; a password in it is refused (it belongs in the environment)."""
    parts = parse_server_url(
        url,
        key="--imap",
        scheme="imap",
        ports=(993, 143),
        env_name="NEWSLETTER_IMAP_PASSWORD",
    )
    login = parts.username or user
    if not login:
        raise ConfigError("--imap", "no user: give imaps://USER@host/ or set bounces.imap_user")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if not re.fullmatch(r"[^\x00-\x1f\x7f\"\\]{1,200}", folder):
        raise ConfigError("--imap", f"folder {folder!r} has characters IMAP would need escaped")
    return ImapSource(parts.hostname, parts.port, parts.implicit_tls, login, folder)


class ImapMailbox:
    """Unseen messages of one IMAP folder; each is marked seen once the intake has it."""

    def __init__(
        self,
        source: ImapSource,
        password: str | None,
        *,
        ca_file: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not password:
            raise ConfigError("NEWSLETTER_IMAP_PASSWORD", "not set; the IMAP login needs it")
        self.source = source
        self._password = password
        self.context: ssl.SSLContext = client_tls_context(ca_file)
        self.timeout = timeout
        self._imap: imaplib.IMAP4 | None = None

    def __enter__(self) -> ImapMailbox:
        where = f"{self.source.host}:{self.source.port}"
        imap: imaplib.IMAP4 | None = None
        try:
            if self.source.implicit_tls:
                imap = imaplib.IMAP4_SSL(
                    self.source.host,
                    self.source.port,
                    ssl_context=self.context,
                    timeout=self.timeout,
                )
            else:
                imap = imaplib.IMAP4(self.source.host, self.source.port, timeout=self.timeout)
                # the password never crosses an unencrypted connection
                imap.starttls(ssl_context=self.context)
            imap.login(self.source.user, self._password)
            status, _ = imap.select(_quoted(self.source.folder))
            if status != "OK":
                raise TransportUnavailableError(
                    f"the IMAP server at {where} has no folder {self.source.folder!r}"
                )
        except ssl.SSLCertVerificationError as exc:
            _drop(imap)
            raise ConfigError(
                "bounces.imap_ca_file",
                f"the TLS certificate of the IMAP server at {where} does not verify "
                f"({exc.verify_message}); name a private CA in bounces.imap_ca_file",
            ) from None
        except imaplib.IMAP4.error as exc:
            _drop(imap)
            # the server's words; the password is never in them
            raise TransportUnavailableError(f"the IMAP server at {where} refused: {exc}") from None
        except OSError as exc:
            _drop(imap)
            raise TransportUnavailableError(
                f"cannot reach the IMAP server at {where}: {exc}"
            ) from None
        except BaseException:
            _drop(imap)
            raise
        self._imap = imap
        return self

    def __exit__(self, *exc: object) -> None:
        imap, self._imap = self._imap, None
        if imap is not None:
            try:
                imap.close()
                imap.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def unseen(self) -> Iterator[tuple[bytes, Item]]:
        """``(uid, item)`` for every message not yet seen, oldest first."""
        imap = self._require()
        status, data = imap.uid("SEARCH", "UNSEEN")
        if status != "OK":
            raise TransportUnavailableError(f"IMAP SEARCH failed: {data!r}")
        for uid in (data[0] or b"").split():
            status, fetched = imap.uid("FETCH", uid.decode("ascii"), "(BODY.PEEK[])")
            if status != "OK":
                raise TransportUnavailableError(f"IMAP FETCH failed: {fetched!r}")
            body = next(
                (part[1] for part in fetched if isinstance(part, tuple) and len(part) == 2), None
            )
            if body is not None:
                yield uid, Item(f"{self.source.folder}#{uid.decode('ascii')}", bytes(body))

    def mark_seen(self, uids: Iterable[bytes]) -> None:
        """Flag ``uids`` seen: taken in (stored for good), so the next poll skips them."""
        wanted = b",".join(uids)
        if wanted:
            self._require().uid("STORE", wanted.decode("ascii"), "+FLAGS", "(\\Seen)")

    def _require(self) -> imaplib.IMAP4:
        if self._imap is None:
            raise RuntimeError("use ImapMailbox as a context manager")
        return self._imap


def _drop(imap: imaplib.IMAP4 | None) -> None:
    if imap is not None:
        with contextlib.suppress(OSError):
            imap.shutdown()


def _quoted(folder: str) -> str:
    return '"' + folder + '"'
