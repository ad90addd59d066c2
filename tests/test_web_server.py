"""``newsletter serve`` on real sockets: slow and half-sent requests are cut off, connections
are limited, a request line with odd bytes is a 400, and none of it leaves a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import REPO, TEST_SECRET, free_port, write_config

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 6
# a loaded CI machine may be late to close; never early
SLACK = 2.5


@dataclass
class Server:
    port: int
    process: subprocess.Popen[str]

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def get(self, path: str = "/subscribe") -> bytes:
        with self.connect() as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes ``sock`` (fails past ``limit``)."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"still open after {limit} s")
    return time.monotonic() - start


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import shutil

    root = tmp_path_factory.mktemp("serve")
    shutil.copytree(REPO / "issues", root / "issues")
    config = write_config(root, database_url=f"sqlite:///{root / 'serve.db'}")
    env = {
        **os.environ,
        "NEWSLETTER_SECRET_KEY": TEST_SECRET,
        "NEWSLETTER_SERVE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "NEWSLETTER_SERVE_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "NEWSLETTER_SERVE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    base = [sys.executable, "-m", "newsletter", "--config", str(config)]
    subprocess.run([*base, "init"], env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    process = subprocess.Popen(
        [*base, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    found = Server(port, process)
    deadline = time.monotonic() + 30
    while True:
        try:
            if found.get().startswith(b"HTTP/1.1 200"):
                break
        except OSError:
            pass
        assert process.poll() is None, "serve exited early"
        assert time.monotonic() < deadline, "serve did not start"
        time.sleep(0.1)
    yield found
    process.terminate()
    output, _ = process.communicate(timeout=10)
    # what every test here did, the server took in its stride
    assert "Traceback" not in output, output
    assert "ERROR" not in output, output


def test_a_silent_connection_is_closed_after_the_header_timeout(server: Server) -> None:
    with server.connect() as sock:
        waited = closed_after(sock, HEADER_TIMEOUT + SLACK)
    assert waited >= HEADER_TIMEOUT - 0.2


def test_half_sent_headers_are_cut_off(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        waited = closed_after(sock, HEADER_TIMEOUT + SLACK)
    assert waited >= HEADER_TIMEOUT - 0.2


def test_headers_trickled_a_byte_at_a_time_do_not_extend_the_deadline(server: Server) -> None:
    request = b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-A: b\r\n" * 50
    start = time.monotonic()
    with server.connect() as sock:
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass  # closed under us: what should happen
        closed_after(sock, HEADER_TIMEOUT + SLACK)
    # the whole trickle would take 20 s
    assert time.monotonic() - start < HEADER_TIMEOUT + SLACK + 1


def test_a_half_sent_body_is_cut_off(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            b"email=a%40"
        )
        waited = closed_after(sock, BODY_TIMEOUT + SLACK)
    assert waited >= BODY_TIMEOUT - 0.2


def test_many_half_sent_connections_are_all_let_go(server: Server) -> None:
    socks = [server.connect() for _ in range(MAX_CONNECTIONS - 1)]
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for sock in socks:
            closed_after(sock, HEADER_TIMEOUT + SLACK)
    finally:
        for sock in socks:
            sock.close()
    assert server.get().startswith(b"HTTP/1.1 200")


def test_a_kept_alive_connection_gets_the_deadline_on_its_next_request(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200")
        length = int(first.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        body = first.split(b"\r\n\r\n", 1)[1]
        while len(body) < length:
            body += sock.recv(65536)
        sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no more
        waited = closed_after(sock, HEADER_TIMEOUT + SLACK)
    assert waited >= HEADER_TIMEOUT - 0.2


def test_connections_beyond_the_limit_are_answered_503(server: Server) -> None:
    idle = [server.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        with server.connect() as sock:
            sock.sendall(b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 503")
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert server.get().startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "target",
    [
        b"/subscribe\xff",
        b"/unsubscribe/\xed\xa0\x80",
        b"/archive?list=\xff\xfe",
        b"/%00",
        b"/archive?list=%00",
    ],
)
def test_odd_bytes_in_the_request_line_are_a_400(server: Server, target: bytes) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:200]


def test_odd_bytes_in_a_form_body_are_no_server_error(server: Server) -> None:
    body = b"email=a%40example.org&name=\xed\xa0\x80%ED%A0%80\xff\x00"
    with server.connect() as sock:
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        answer = read_response(sock)
    assert answer[:12] in (b"HTTP/1.1 200", b"HTTP/1.1 400"), answer[:200]


def test_a_client_hanging_up_mid_body_is_no_error(server: Server) -> None:
    for _ in range(3):
        with server.connect() as sock:
            sock.sendall(
                b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\n"
                b"email=a%40ex"
            )
            time.sleep(0.1)
    time.sleep(0.3)
    # the fixture's teardown checks the server's log for tracebacks and errors
    assert server.get().startswith(b"HTTP/1.1 200")
