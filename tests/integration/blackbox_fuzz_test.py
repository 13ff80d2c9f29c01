"""Black-box fuzzing of the running binary (issue 12): mutated requests on the proxy port,
inside an intercepted CONNECT tunnel and on the admin port. The process must stay up, the
sanitizers silent (in the ASan stage this runs against the ASan build), and no request the
sidecar answered 400/413/431 may have reached the upstream.

Each request carries its own marker in the path (`/api/v1/users/fz<n>z`); the upstream
records the target of every request head it receives, so "answered 400 but forwarded" is an
exact check, not a guess. The mutations are seeded (OKTA_FUZZ_SEED, default 12) and bounded
in count (OKTA_FUZZ_ROUNDS per surface, default 1200) and time (60 s per surface).

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v blackbox_fuzz_test
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import ssl
import tempfile
import time
import unittest

import hostile_upstream
import sidecar
import test_pki

HOST = "acme.okta.com"
SEED = int(os.environ.get("OKTA_FUZZ_SEED", "12"))
ROUNDS = int(os.environ.get("OKTA_FUZZ_ROUNDS", "1200"))
SURFACE_SECONDS = 60.0
REFUSED = {400, 413, 431}
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                   "WARNING: ThreadSanitizer")


def base_requests(target: str, host: str) -> list:
    """Valid requests of every framing, to be mutated; `target` holds the marker."""
    body = b'{"profile":{"login":"a@example.com"}}'
    return [
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: SSWS abc\r\n\r\n".encode(),
        f"HEAD {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
        (f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
         f"Content-Length: {len(body)}\r\n\r\n").encode() + body,
        (f"POST {target} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n").encode(),
        (f"PUT {target} HTTP/1.1\r\nHost: {host}\r\nExpect: 100-continue\r\n"
         "Content-Length: 4\r\n\r\nbody").encode(),
        f"GET {target} HTTP/1.0\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode(),
    ]


# Known-hostile pieces spliced into requests: the findings of the first black-box run
# (malformed chunk sizes, bare LF, long extensions and trailers) and classic smuggling shapes.
SPLICES = [
    b"0x5", b" 5", b"g", b"-1", b"5 ", b"\n", b"\r", b"\r\n\r\n", b"\x00", b"\xff",
    b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n", b"Content-Length: -1\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n", b" folded\r\n", b"\tfolded\r\n",
    b";" + b"e" * 2000, b"X: " + b"v" * 70000 + b"\r\n", b"0\r\nX: " + b"v" * 70000 + b"\r\n\r\n",
    b"ffffffffffffffff\r\n", b"Host: other.example\r\n", b"Content-Length: 99999999999\r\n",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:  # flip a byte
            i = rng.randrange(len(b))
            b[i] = rng.randrange(256)
        elif op == 1:  # insert random bytes
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and b:  # delete a run
            del b[pos:pos + rng.randint(1, 6)]
        elif op == 3:  # splice a hostile piece
            b[pos:pos] = rng.choice(SPLICES)
        elif op == 4:  # duplicate a line
            lines = bytes(b).split(b"\r\n")
            if len(lines) > 2:
                i = rng.randrange(1, len(lines) - 1)
                lines.insert(i, lines[i])
                b = bytearray(b"\r\n".join(lines))
        else:  # swap CRLF for a bare LF somewhere
            i = bytes(b).find(b"\r\n", pos)
            if i >= 0:
                del b[i]
    return bytes(b)


def exchange(sock: socket.socket, payload: bytes, timeout: float = 3.0) -> bytes:
    """Sends a request, returns what came back until the close or a quiet `timeout`."""
    sock.settimeout(timeout)
    try:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR) if not isinstance(sock, ssl.SSLSocket) else None
    except OSError:
        pass
    out = b""
    while True:
        try:
            data = sock.recv(65536)
        except (socket.timeout, OSError, ssl.SSLError):
            break
        if not data:
            break
        out += data
        if len(out) > 1 << 20:
            break
        sock.settimeout(0.3)  # an answer has begun: what belongs to it follows at once
    return out


def statuses(reply: bytes) -> list:
    return [int(m) for m in re.findall(rb"(?:^|\r\n)HTTP/1\.[01] (\d{3}) ", reply)]


class BlackboxFuzzTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="blackbox-fuzz-")
        pki = test_pki.make_pki(cls.tmp)
        cls.up = hostile_upstream.HostileUpstream(pki.server_cert, pki.server_key).start()
        cls.sc = sidecar.Sidecar({"retry": {"max_attempts": 1},
                                  "upstream": {"response_timeout_ms": 2000},
                                  "client": {"header_timeout_ms": 2000}},
                                 upstream_port=cls.up.port, trust_file=pki.ca_cert).start()
        cls.refused: list = []  # markers answered 400/413/431
        cls.sent = 0

    @classmethod
    def tearDownClass(cls) -> None:
        code = cls.sc.stop()
        cls.up.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if code != 0:
            raise AssertionError(f"sidecar exited {code}")

    def run_surface(self, name: str, connect, target_of, host: str) -> None:
        rng = random.Random(f"{SEED}-{name}")
        deadline = time.monotonic() + SURFACE_SECONDS
        answered = 0
        n = 0
        for n in range(ROUNDS):
            if time.monotonic() > deadline:
                break
            marker = f"fz{name}{n}z"
            payload = mutate(rng, rng.choice(base_requests(target_of(marker), host)))
            try:
                sock = connect()
            except OSError as e:
                self.fail(f"{name}: cannot connect after {n} requests: {e}")
            try:
                reply = exchange(sock, payload)
            finally:
                sock.close()
            st = statuses(reply)
            if st:
                answered += 1
            if st and st[0] in REFUSED:
                self.refused.append(marker)
            self.assertTrue(self.sc.alive(), f"{name}: the sidecar died on request {n}: {payload[:300]!r}")
        type(self).sent += n + 1
        self.assertGreater(answered, n // 4, f"{name}: most mutated requests got an answer")
        print(f"\n[figure] blackbox fuzz {name}: {n + 1} mutated requests, {answered} answered, "
              f"{len(self.refused)} refused so far, seed {SEED}")
        self.check_invariants()

    def check_invariants(self) -> None:
        self.assertTrue(self.sc.alive())
        bad = [line for line in self.sc.logs() if any(m in line for m in SANITIZER_MARKS)]
        self.assertEqual(bad, [], "sanitizer reports")
        self.assertEqual(self.sc.get_admin("/healthz").status, 200)
        time.sleep(0.2)  # heads in flight to the upstream have arrived
        heads = "\n".join(self.up.heads)
        leaked = [m for m in self.refused if m in heads]
        self.assertEqual(leaked, [], "requests answered 400/413/431 that reached the upstream")

    def test_1_proxy_port_absolute_form(self) -> None:
        self.run_surface("proxy", lambda: socket.create_connection(self.sc.listen, timeout=5),
                         lambda m: f"https://{HOST}/api/v1/users/{m}", HOST)

    def test_2_inside_tunnel(self) -> None:
        self.run_surface("tunnel", lambda: self.sc.raw_tunnel(HOST, timeout=5), lambda m: f"/api/v1/users/{m}",
                         HOST)

    def test_3_admin_port(self) -> None:
        self.run_surface("admin", lambda: socket.create_connection(self.sc.admin_listen, timeout=5),
                         lambda m: f"/status?{m}", "127.0.0.1")

    def test_4_known_killers(self) -> None:
        """The findings of the first black-box run, each exactly as reported."""
        trailer = (b"POST /status HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"0\r\nX: " + b"v" * 70000 + b"\r\n\r\n")
        for port in (self.sc.listen, self.sc.admin_listen):
            s = socket.create_connection(port, timeout=5)
            st = statuses(exchange(s, trailer))
            s.close()
            self.assertTrue(st and st[0] in REFUSED, st)
        for size in (b"0x5", b" 5", b"g", b"-1"):
            marker = f"fzchunk{size.hex()}z"
            req = (f"POST https://{HOST}/api/v1/users/{marker} HTTP/1.1\r\nHost: {HOST}\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n").encode() + size + b"\r\nhello\r\n0\r\n\r\n"
            s = socket.create_connection(self.sc.listen, timeout=5)
            st = statuses(exchange(s, req))
            s.close()
            self.assertEqual(st[:1], [400], size)
            self.refused.append(marker)
        # The sidecar's own replies to HEAD carry no body: a pipelining client stays in step.
        s = socket.create_connection(self.sc.listen, timeout=5)
        reply = exchange(s, b"HEAD http://not-allowed.example/ HTTP/1.1\r\nHost: not-allowed.example\r\n\r\n"
                            b"HEAD http://not-allowed.example/ HTTP/1.1\r\nHost: not-allowed.example\r\n"
                            b"Connection: close\r\n\r\n")
        s.close()
        self.assertEqual(statuses(reply), [403, 403])
        self.assertNotIn(b"errorCode", reply)
        self.check_invariants()


if __name__ == "__main__":
    unittest.main()
