"""Inside a private namespace: a DNS server for DKIM keys and ``opendkim-testmsg`` runs against it.

Started by ``tests/opendkim.py`` under ``unshare --net --mount``; never run on the host, where it
would need port 53 and change ``/etc/resolv.conf``. Requests and answers are JSON lines:
``{"records": {name: txt}}`` sets the TXT records, ``{"message": hex}`` verifies one message.
"""

from __future__ import annotations

import fcntl
import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    # a new network namespace starts with lo down; done with ioctl so iproute2 is not needed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


class Zone:
    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))

    def serve(self) -> None:
        while True:
            data, peer = self.sock.recvfrom(4096)
            try:
                query = dns.message.from_wire(data)
            except Exception:  # a garbled packet gets no answer
                continue
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().lower()
            self.queries.append(name)
            value = self.records.get(name)
            if value is not None and question.rdtype == dns.rdatatype.TXT:
                # strings of at most 255 bytes, joined again by the verifier (RFC 6376 3.6.2.2)
                strings = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", strings))
            elif value is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)


def main() -> None:
    testmsg = sys.argv[1]
    error = ""
    zone = None
    try:
        loopback_up()
        resolv = Path(tempfile.mkdtemp()) / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions edns0 attempts:1 timeout:5\n")
        subprocess.run(
            ["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True, capture_output=True
        )
        zone = Zone()
        threading.Thread(target=zone.serve, daemon=True).start()
    except (OSError, subprocess.CalledProcessError) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        error = f"{exc} {stderr.decode(errors='replace')}".strip()
    for line in sys.stdin:
        request = json.loads(line)
        if error or zone is None:
            answer: dict[str, object] = {"error": error or "no zone"}
        elif "records" in request:
            zone.records = {
                name.lower().rstrip(".") + ".": value for name, value in request["records"].items()
            }
            answer = {"ready": True}
        else:
            zone.queries.clear()
            run = subprocess.run(
                [testmsg],
                input=bytes.fromhex(request["message"]),
                capture_output=True,
                timeout=60,
                check=False,
            )
            answer = {
                "returncode": run.returncode,
                "stderr": run.stderr.decode(errors="replace"),
                "queries": list(zone.queries),
            }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
