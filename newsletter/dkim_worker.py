"""The DKIM signer process: signs the copies of a send beside the sending process's event loop.

A send keeps its event loop busy on one core; a signature costs about a third of that again,
nearly all of it the private-key operation. Made in threads of the sending process, every call
into OpenSSL and back meets the loop at the GIL, and the loop stalls on each hand-over (issue
10: 0.53x the unsigned rate on two cores). A process of its own signs on the other core and
shares nothing with the loop but a socket (0.73x on the same machine, where the test relay
takes part of that core; docs/benchmarks.md).

:class:`~newsletter.dkim_signers.IssueSigner` starts one and talks to it over a socket pair, in
frames of a 4-byte length and a pickle. Pickle is safe here: the socket joins two processes of
the same program and nothing else can write to it. The frames, in order:

- to the worker: ``("keys", domain, [(selector, pkcs8_der), ...])`` first, then
  ``("template", number, header_pieces, body_pieces)`` once per signing template,
  ``("sign", [(template, values), ...])`` for the copies asked for in one pass of the loop,
  ``values`` in the template's :attr:`~newsletter.dkim.SigningTemplate.slot_order`, and
  ``("forget", [template, ...])`` for templates whose issue the sending process let go;
- from the worker: a list of answers in the order asked, each the ``DKIM-Signature`` header
  line(s) as bytes or, when that copy cannot be signed, the reason as a str.

The worker runs in a process group of its own (a terminal's Ctrl-C goes to the sending process
only) and ignores SIGINT and SIGTERM (a service manager may signal every process of the
service): the sending process stops it itself, after its in-flight messages, by closing the
socket. It exits when the socket closes, so a sending process killed with SIGKILL leaves none
behind.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import struct
import sys
from collections.abc import Iterator
from typing import Any

from cryptography.hazmat.primitives import serialization

from newsletter.dkim import Signer, SigningKey, SigningTemplate

_LENGTH = struct.Struct(">I")
# answers go back in groups of this many at most: the loop wakes once per group, and the first
# copy of a big request does not wait for the last
ANSWER_GROUP = 16


def frame(message: object) -> bytes:
    """One message as it goes over the socket."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def frames(buffer: bytearray) -> Iterator[Any]:
    """The complete messages at the front of ``buffer``, taken out of it as they are read."""
    start = 0
    end = len(buffer)
    try:
        while end - start >= 4:
            (size,) = _LENGTH.unpack_from(buffer, start)
            if end - start - 4 < size:
                break
            with memoryview(buffer) as view:
                # our own process on the other end of a socket pair: nothing else writes
                message = pickle.loads(view[start + 4 : start + 4 + size])  # noqa: S301
            start += 4 + size
            yield message
    finally:
        del buffer[:start]


def serve(sock: socket.socket) -> None:
    """Sign what comes in on ``sock`` until the other end closes it."""
    signer: Signer | None = None
    templates: dict[int, SigningTemplate] = {}
    buffer = bytearray()
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return
        buffer += data
        for message in frames(buffer):
            if message[0] == "keys":
                _, domain, keys = message
                signer = Signer(domain, [_key(selector, der) for selector, der in keys])
            elif message[0] == "forget":
                for number in message[1]:
                    templates.pop(number, None)
            elif message[0] == "template":
                _, number, headers, body = message
                if signer is None:
                    raise RuntimeError("a template before the keys")
                templates[number] = signer.template(headers, body)
            else:
                answers: list[bytes | str] = []
                for number, values in message[1]:
                    try:
                        answers.append(templates[number].signature_of(values))
                    except ValueError as exc:
                        answers.append(str(exc))
                    if len(answers) >= ANSWER_GROUP:
                        sock.sendall(frame(answers))
                        answers = []
                if answers:
                    sock.sendall(frame(answers))


def _key(selector: str, der: bytes) -> SigningKey:
    key = serialization.load_der_private_key(der, password=None)
    return SigningKey(selector, key)  # type: ignore[arg-type]


def main() -> None:
    """``python -m newsletter.dkim_worker FD``: serve the socket inherited as FD."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the sending process went away: nothing left to sign for
    finally:
        sock.close()
    os._exit(0)


if __name__ == "__main__":
    main()
