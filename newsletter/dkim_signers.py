"""How the project's mail gets its DKIM signatures: issue copies beside the event loop, the rest
one by one, with keys read once per process and again when their files change.

:class:`IssueSigner` is what the delivery engine's ``MessageSigner`` is in production
(``sending.engine_for``); :func:`sign_single` is the hook in ``transport.send_single`` that every
other message goes through (test copies, confirmations, the editor's reports and notices,
preview test sends). The signing itself is :mod:`newsletter.dkim`'s (pure); the signer process
is :mod:`newsletter.dkim_worker`.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from newsletter import dkim_worker
from newsletter.config import Dkim
from newsletter.dkim import BodyPiece, HeaderPiece, Signer, SigningTemplate, Slot
from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.message import MessageTemplate, Personalization

log = logging.getLogger(__name__)


class IssueSigner:
    """Signs the copies of an issue a send delivers, off the event loop.

    Per issue (per :class:`~newsletter.message.MessageTemplate`, and per set of header names,
    which is the same for every recipient of a send) one :class:`SigningTemplate` is built from
    the template's layout; per recipient :meth:`sign` renders the copy on the caller's thread
    (cheap: a bytes join) and leaves the signature to a :class:`SignerProcess` when called in a
    running event loop on a machine with more than one core, or else to a small thread pool
    (one core; sync callers such as tests and benchmarks). A signer process that stops is not
    an outage: what it still owed and everything after is signed in the threads. The signature
    is computed over the copy before SMTP's dot doubling, and goes in front of the doubled bytes
    unchanged (it has no line starting with a dot).
    """

    def __init__(
        self, signer: Signer, *, threads: int | None = None, process: bool | None = None
    ) -> None:
        self.signer = signer
        self._threads = threads or min(4, os.cpu_count() or 1)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # a process of its own only where there is a core for it
        self._use_process = (os.cpu_count() or 1) > 1 if process is None else process
        self._process: SignerProcess | None = None
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

    @property
    def process(self) -> SignerProcess | None:
        """The signer process, once started (and while it runs)."""
        return self._process

    def start(self) -> None:
        """Start the signer process now, where one is used: a send calls this before it
        prepares the issue, so the process is ready by the first copy (it takes about a
        tenth of a second to start)."""
        if not self._use_process or self._process is not None:
            return
        try:
            self._process = SignerProcess(self.signer)
        except OSError as exc:
            log.warning("cannot start the DKIM signer process (%s); signing in threads", exc)
            self._use_process = False

    def sign(
        self, template: MessageTemplate, person: Personalization
    ) -> tuple[bytes, asyncio.Future[bytes] | Future[bytes]]:
        """The recipient's copy, dot-doubled for DATA, and its ``DKIM-Signature`` header(s)
        to come: put those in front of it. Bad data (a header that cannot be written) raises
        here; a key that fails to sign is a :class:`ConfigError` from the future."""
        signable = template.signable(person)
        headers = signable.headers
        signing, personal = self._template_for(template, headers)
        values: dict[str, bytes] = dict(signable.values)
        for index, slot in personal:
            values[slot] = headers[index][1]
        if self._use_process:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self.start()
                process = self._process
                if process is not None and process.running:
                    return signable.data, process.submit(loop, signing, values, self._pool)
        return signable.data, self._pool().submit(_signature, signing, values)

    def close(self) -> None:
        """Stop the process and the threads (signatures already asked for of the threads are
        still made)."""
        with self._lock:
            executor, self._executor = self._executor, None
            process, self._process = self._process, None
        if process is not None:
            process.close()
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


class SignerProcess:
    """A :mod:`newsletter.dkim_worker` process and the copies it has not signed yet.

    Used from one event loop at a time (the loop of the send under way; a later send in another
    loop takes it over). Requests asked for in one pass of the loop go out in one write, and the
    answers are read by the loop itself when they arrive (no thread in between); they come back
    in the order asked, so each answer settles the oldest future waiting.
    """

    def __init__(self, signer: Signer) -> None:
        ours, theirs = socket.socketpair()
        try:
            env = dict(os.environ)
            # the package's own location first, as this process found it (a checkout, a wheel)
            root = str(Path(__file__).resolve().parent.parent)
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
            self._child = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", "newsletter.dkim_worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
                # a process group of its own: a terminal's Ctrl-C goes to the sending process,
                # which stops it when its in-flight messages are done
                process_group=0,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        keys = [
            (
                key.selector,
                key.private_key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
            for key in signer.keys
        ]
        self._sock = ours
        # the keys go over the socket, never on a command line or in the environment (a
        # small frame: the socket's buffer takes it without waiting for the process)
        ours.sendall(dkim_worker.frame(("keys", signer.domain, keys)))
        ours.setblocking(False)
        self._out = bytearray()
        self._in = bytearray()
        self._loop: asyncio.AbstractEventLoop | None = None
        # the signing templates the process holds, by the number it knows each by; one whose
        # issue is gone here is forgotten there too (a worker runs for weeks)
        self._numbers: weakref.WeakKeyDictionary[SigningTemplate, int] = weakref.WeakKeyDictionary()
        self._sent: dict[int, weakref.ref[SigningTemplate]] = {}
        self._counter = itertools.count()
        # asked for and not answered, oldest first: the future and what to sign again in the
        # threads should the process stop
        self._waiting: collections.deque[
            tuple[asyncio.Future[bytes], SigningTemplate, Mapping[str, bytes]]
        ] = collections.deque()
        self._batch: list[tuple[int, tuple[bytes, ...]]] = []
        self._flush_soon = False
        self._writing = False
        self._fallback: Callable[[], ThreadPoolExecutor] | None = None
        self.running = True

    @property
    def pid(self) -> int:
        return self._child.pid

    def submit(
        self,
        loop: asyncio.AbstractEventLoop,
        signing: SigningTemplate,
        values: Mapping[str, bytes],
        fallback: Callable[[], ThreadPoolExecutor],
    ) -> asyncio.Future[bytes]:
        """Ask for one copy's signature; the future settles on ``loop``. ``fallback`` gives the
        threads that sign it should the process stop first."""
        self._fallback = fallback
        if loop is not self._loop:
            self._attach(loop)
        number = self._numbers.get(signing)
        if number is None:
            number = self._send_template(signing)
        future: asyncio.Future[bytes] = loop.create_future()
        self._waiting.append((future, signing, values))
        self._batch.append((number, tuple(values[name] for name in signing.slot_order)))
        if not self._flush_soon:
            self._flush_soon = True
            loop.call_soon(self._flush)
        return future

    def _send_template(self, signing: SigningTemplate) -> int:
        gone = [number for number, ref in self._sent.items() if ref() is None]
        if gone:
            for number in gone:
                del self._sent[number]
            self._out += dkim_worker.frame(("forget", gone))
        number = self._numbers[signing] = next(self._counter)
        self._sent[number] = weakref.ref(signing)
        self._out += dkim_worker.frame(("template", number, signing.headers, signing.body))
        return number

    @property
    def templates(self) -> int:
        """How many signing templates the process holds."""
        return len(self._sent)

    def close(self) -> None:
        """Stop the process: it exits when its socket closes. Signatures still owed are
        cancelled (the send that asked for them is over)."""
        for future, _, _ in self._waiting:
            if not future.done() and not future.get_loop().is_closed():
                future.cancel()
        self._waiting.clear()
        self._detach()
        self.running = False
        self._sock.close()
        try:
            self._child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._detach()
        self._loop = loop
        loop.add_reader(self._sock.fileno(), self._readable)
        self._flush_soon = self._writing = False
        if self._out or self._batch:
            self._flush()

    def _detach(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed() and self._sock.fileno() >= 0:
            loop.remove_reader(self._sock.fileno())
            loop.remove_writer(self._sock.fileno())

    def _flush(self) -> None:
        self._flush_soon = False
        if self._batch:
            self._out += dkim_worker.frame(("sign", self._batch))
            self._batch = []
        if not self._writing:
            self._write()

    def _write(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._stopped(f"cannot write to it: {exc}")
            return
        del self._out[:sent]
        want = bool(self._out)
        if want != self._writing and self._loop is not None:
            self._writing = want
            if want:
                self._loop.add_writer(self._sock.fileno(), self._write)
            else:
                self._loop.remove_writer(self._sock.fileno())

    def _readable(self) -> None:
        try:
            data = self._sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            self._stopped(f"cannot read from it: {exc}")
            return
        if not data:
            self._stopped("it closed its socket")
            return
        self._in += data
        for answers in dkim_worker.frames(self._in):
            for answer in answers:
                future, _, _ = self._waiting.popleft()
                if future.done() or future.get_loop().is_closed():
                    continue  # a send that gave up on it (cancelled, or its loop ended)
                if isinstance(answer, bytes):
                    future.set_result(answer)
                else:
                    future.set_exception(ConfigError("dkim", f"cannot sign the message: {answer}"))

    def _stopped(self, why: str) -> None:
        """The process is gone: what it owed is signed in the threads, and so is what comes."""
        if not self.running:
            return
        self.running = False
        self._detach()
        code = self._child.poll()
        log.warning(
            "the DKIM signer process stopped (%s%s); signing in threads from here",
            why,
            "" if code is None else f", exit status {code}",
        )
        waiting, self._waiting = self._waiting, collections.deque()
        self._batch = []
        if not waiting or self._fallback is None:
            return
        pool = self._fallback()
        for future, signing, values in waiting:
            if future.done():
                continue
            settle = _settler(future)
            pool.submit(_signature, signing, values).add_done_callback(settle)


def _settler(future: asyncio.Future[bytes]) -> Callable[[Future[bytes]], None]:
    """A done-callback that hands a thread's result to ``future`` on its own loop."""
    loop = future.get_loop()

    def copy(done: Future[bytes]) -> None:
        if future.done():
            return
        exc = done.exception()
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(done.result())

    def settle(done: Future[bytes]) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(copy, done)

    return settle


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
