"""Framing-correct upstream connections (issue 12): against a hostile-but-legal upstream, no
client ever receives another client's response, and the pool never reuses a connection that
has unread bytes on it.

Each request carries a unique `X-Marker`; the upstream answers with that marker as the body,
so a response that crossed between clients shows at once. Clients connect the way apps do
(CONNECT + TLS through the sidecar), one new client connection per request, sequentially and
concurrently, and HTTP/1.0 and pipelining clients on the plain listener.

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v framing_test
"""

from __future__ import annotations

import concurrent.futures
import shutil
import socket
import ssl
import tempfile
import time
import unittest
import uuid

import hostile_upstream
import sidecar
import test_pki

metric = sidecar.metric
HOST = "acme.okta.com"
PKI: test_pki.Pki
TMP: str


def setUpModule() -> None:
    global PKI, TMP
    TMP = tempfile.mkdtemp(prefix="framing-test-")
    PKI = test_pki.make_pki(TMP)


def tearDownModule() -> None:
    shutil.rmtree(TMP, ignore_errors=True)


def marker() -> str:
    return uuid.uuid4().hex[:16]


class Base(unittest.TestCase):
    tls = True

    def setUp(self) -> None:
        cert = (PKI.server_cert, PKI.server_key) if self.tls else (None, None)
        self.up = hostile_upstream.HostileUpstream(*cert).start()
        self.addCleanup(self.up.stop)

    def start(self, config: dict | None = None) -> sidecar.Sidecar:
        cfg = {"retry": {"max_attempts": 1}, "circuit_breaker": {"failure_threshold": 1000}}
        sc = sidecar.Sidecar(sidecar.deep_merge(cfg, config or {}), upstream_port=self.up.port,
                             trust_file=PKI.ca_cert).start()
        self.addCleanup(lambda: self.assertEqual(sc.stop(), 0, "clean exit"))
        return sc

    def one(self, sc: sidecar.Sidecar, mode: str, method: str = "GET",
            body: bytes | None = None) -> tuple:
        """One request on a new CONNECT tunnel, read by a client that skips 1xx responses as
        RFC 9110 §15.2 requires (Python's http.client only knows how to skip 100)."""
        m = marker()
        return m, fetch(sc, method, f"/hostile/{mode}/{m}", {"X-Marker": m}, body)


class InterleavedTest(Base):
    """Each hostile mode between normal requests: every client gets its own response."""

    def check_mode(self, mode: str, expect_status: int = 200, rounds: int = 12) -> None:
        sc = self.start()
        for i in range(rounds):
            m, r = self.one(sc, mode if i % 2 == 0 else "plain")
            if i % 2 == 0 and expect_status != 200:
                self.assertEqual(r.status, expect_status, (mode, r.body))
                continue
            self.assertEqual(r.status, 200, (mode, i, r.body))
            self.assertEqual(r.body.decode(), m, f"{mode}: request {i} got another's response")
            self.assertEqual(r.header("X-Marker"), m)

    def test_interim_103(self) -> None:
        self.check_mode("interim103")

    def test_several_interims(self) -> None:
        self.check_mode("interims")

    def test_unsolicited_100(self) -> None:
        self.check_mode("continue100")

    def test_stray_bytes_after_body(self) -> None:
        self.check_mode("stray")

    def test_stray_bytes_on_idle_connection(self) -> None:
        sc = self.start()
        for i in range(12):
            m, r = self.one(sc, "stray_late" if i % 2 == 0 else "plain")
            self.assertEqual(r.body.decode(), m, f"request {i} got another's response")
            time.sleep(0.08)  # the stray bytes arrive while the connection idles in the pool
        self.assertGreaterEqual(metric(sc, "okta_sidecar_upstream_connections_unsolicited_total"), 1)

    def test_close_delimited_body(self) -> None:
        self.check_mode("close_delimited")

    def test_head_and_body_in_pieces(self) -> None:
        # The sidecar parses what it has and reads on: a head whose end is still incomplete
        # ("\r\n\r") and a body that arrives after it are waited for, never misread.
        self.check_mode("split")

    def test_chunk_header_and_data_in_pieces(self) -> None:
        self.check_mode("split_chunked")

    def test_head_with_content_length(self) -> None:
        sc = self.start()
        conn = sc.connection(HOST)
        self.addCleanup(conn.close)
        for i in range(6):
            m = marker()
            method = "HEAD" if i % 2 == 0 else "GET"
            r = sidecar.request(conn, method, f"/hostile/head_length/{m}", {"X-Marker": m})
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-Marker"), m)
            if method == "HEAD":
                self.assertEqual(r.body, b"")
                self.assertEqual(r.header("Content-Length"), "1234")
            else:
                self.assertEqual(r.body.decode(), m)

    def test_101_is_refused(self) -> None:
        self.check_mode("switch", expect_status=502)

    def test_endless_interims_are_refused(self) -> None:
        sc = self.start()
        t0 = time.monotonic()
        _, r = self.one(sc, "interim_flood")
        self.assertEqual(r.status, 502)
        self.assertLess(time.monotonic() - t0, 2.0, "no wait for a final response that never comes")


class InterimRelayTest(Base):
    def test_103_reaches_http11_client_before_the_final_response(self) -> None:
        sc = self.start()
        t = sc.raw_tunnel(HOST)
        self.addCleanup(t.close)
        m = marker()
        t.sendall(f"GET /hostile/interims/{m} HTTP/1.1\r\nHost: {HOST}\r\nX-Marker: {m}\r\n\r\n".encode())
        data = _recv_until(t, m.encode(), must_contain=b"\r\n\r\n")
        # 100 is the sidecar's own business; 102 and both 103s are relayed, in order.
        self.assertNotIn(b"100 Continue", data)
        first_final = data.index(b"HTTP/1.1 200")
        self.assertEqual(data[:first_final].count(b"HTTP/1.1 103"), 2)
        self.assertEqual(data[:first_final].count(b"HTTP/1.1 102"), 1)
        self.assertIn(b"</a.js>", data[:first_final])


class ConcurrentTest(Base):
    def test_many_concurrent_clients_mixed_modes(self) -> None:
        sc = self.start({"upstream": {"max_connections_per_host": 8}})
        modes = ["plain", "interim103", "continue100", "stray", "close_delimited", "interims"]

        def run(i: int) -> tuple:
            m, r = self.one(sc, modes[i % len(modes)])
            return m, r.status, r.body.decode(errors="replace")

        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            results = list(ex.map(run, range(240)))
        crossed = [(m, body) for m, status, body in results if body != m]
        self.assertEqual(crossed, [], "responses that reached the wrong client")
        self.assertTrue(all(status == 200 for _, status, _ in results))
        self.assertGreaterEqual(
            metric(sc, "okta_sidecar_upstream_connections_discarded_total", reason="unread_bytes"), 1)


class TruncationTest(Base):
    def test_close_without_close_notify_is_a_truncation(self) -> None:
        sc = self.start()
        m, r = self.one(sc, "truncated")
        # Nothing reached the client before the truncation showed: a well-formed 502.
        self.assertEqual(r.status, 502, r.body)
        self.assertEqual(r.header("X-Okta-Sidecar-Error"), "upstream_unreachable")
        rec = sc.wait_for_log(lambda x: x.get("msg") == "access" and x.get("status") == 502
                              and x.get("upstream_status") == 200)
        self.assertIsNotNone(rec, "the access log says 502 after an upstream 200, not 200")
        self.assertEqual(rec.get("error"), "upstream_body_truncated")
        # The next client is unaffected.
        m, r = self.one(sc, "plain")
        self.assertEqual(r.body.decode(), m)


class EarlyResponseTest(Base):
    def test_response_before_the_body_was_read(self) -> None:
        sc = self.start()
        for i in range(6):
            m, r = self.one(sc, "early", "POST", body=b"x" * 5000)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body.decode(), "early:" + m)
            m, r = self.one(sc, "plain")
            self.assertEqual(r.body.decode(), m, f"round {i}")

    def test_early_413_and_close(self) -> None:
        sc = self.start()
        m, r = self.one(sc, "early_close", "POST", body=b"x" * 5000)
        self.assertEqual(r.status, 413)
        self.assertEqual(r.body.decode(), "too big:" + m)
        m, r = self.one(sc, "plain")
        self.assertEqual(r.body.decode(), m)


class PlainUpstreamTest(Base):
    """The same over a plain upstream, with HTTP/1.0 and pipelining clients on the listener."""

    tls = False

    def start_plain(self) -> sidecar.Sidecar:
        return self.start({"intercept_hosts": ["127.0.0.1"],
                           "access": {"allowed_ports": [self.up.port],
                                      "allow_private_destinations": True}})

    def raw(self, sc: sidecar.Sidecar, payload: bytes) -> bytes:
        s = socket.create_connection(sc.listen, timeout=10)
        try:
            s.sendall(payload)
            out = b""
            while True:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    break
                if not data:
                    break
                out += data
            return out
        finally:
            s.close()

    def test_http10_client_gets_no_interim_and_its_own_body(self) -> None:
        sc = self.start_plain()
        for mode in ("interim103", "interims", "stray", "truncated"):
            m = marker()
            out = self.raw(sc, f"GET http://127.0.0.1:{self.up.port}/hostile/{mode}/{m} HTTP/1.0\r\n"
                               f"X-Marker: {m}\r\n\r\n".encode())
            self.assertTrue(out.startswith(b"HTTP/1.0 "), (mode, out[:80]))
            self.assertNotIn(b" 103 ", out)
            if mode == "truncated":
                # Content-Length 1000, 16 bytes, then the close: forwarded as far as it went
                # and then cut, never padded or passed off as complete.
                self.assertLess(len(out.split(b"\r\n\r\n", 1)[1]), 1000)
            else:
                self.assertTrue(out.endswith(m.encode()), (mode, out[-80:]))

    def test_http10_keep_alive_client_gets_the_close_that_ends_a_reframed_body(self) -> None:
        # A chunked or close-delimited body reaches an HTTP/1.0 client delimited by the close
        # (it has no chunked coding): the connection must then close even though the client
        # asked for keep-alive, or the client waits for an end that never comes.
        sc = self.start_plain()
        for mode in ("split_chunked", "close_delimited"):
            m = marker()
            s = socket.create_connection(sc.listen, timeout=5)
            try:
                s.sendall(f"GET http://127.0.0.1:{self.up.port}/hostile/{mode}/{m} HTTP/1.0\r\n"
                          f"Connection: keep-alive\r\nX-Marker: {m}\r\n\r\n".encode())
                out = b""
                while True:
                    data = s.recv(65536)  # a timeout here is the failure: no close came
                    if not data:
                        break
                    out += data
            finally:
                s.close()
            head, body = out.split(b"\r\n\r\n", 1)
            self.assertTrue(head.startswith(b"HTTP/1.0 200"), (mode, head))
            self.assertNotIn(b"transfer-encoding", head.lower(), mode)
            self.assertNotIn(b"keep-alive", head.lower(), mode)
            self.assertEqual(body, m.encode(), mode)

    def test_request_heads_in_pieces(self) -> None:
        # A client whose head arrives cut inside its last CRLF, or a byte at a time, is waited
        # for (within client.header_timeout_ms) and served, never answered 400 or 431.
        sc = self.start_plain()
        for how in ("last_crlf", "bytes"):
            m = marker()
            head = (f"GET http://127.0.0.1:{self.up.port}/hostile/plain/{m} HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{self.up.port}\r\nX-Marker: {m}\r\n"
                    "Connection: close\r\n\r\n").encode()
            if how == "last_crlf":
                pieces = [head[:-1], head[-1:]]
            else:
                pieces = [head[i:i + 1] for i in range(len(head) - 40, len(head))]
                pieces.insert(0, head[:len(head) - 40])
            s = socket.create_connection(sc.listen, timeout=10)
            try:
                for piece in pieces:
                    s.sendall(piece)
                    time.sleep(0.01)
                out = b""
                while data := s.recv(65536):
                    out += data
            finally:
                s.close()
            self.assertTrue(out.startswith(b"HTTP/1.1 200 "), (how, out[:120]))
            self.assertTrue(out.endswith(m.encode()), (how, out[-80:]))

    def test_tls_record_in_part_waits_for_the_rest_within_the_header_timeout(self) -> None:
        # A request head whose TLS record arrives only in part: OpenSSL holds the part, the
        # socket has nothing more. The sidecar must wait on the socket, within
        # client.header_timeout_ms, and then close; not spin on the held bytes past the deadline.
        sc = self.start({"client": {"header_timeout_ms": 1000}})
        s = socket.create_connection(sc.listen, timeout=10)
        try:
            s.sendall(b"CONNECT acme.okta.com:443 HTTP/1.1\r\nHost: acme.okta.com:443\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = sc.client_ssl_context().wrap_bio(incoming, outgoing, server_hostname="acme.okta.com")
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    s.sendall(outgoing.read())
                    incoming.write(s.recv(65536))
            s.sendall(outgoing.read())
            tls.write(b"GET /hostile/plain/x HTTP/1.1\r\nHost: acme.okta.com\r\n\r\n")
            record = outgoing.read()
            s.sendall(record[:-7])  # all but the end of the record
            started = time.monotonic()
            closed = False
            s.settimeout(0.5)
            while not closed and time.monotonic() - started < 8:
                try:
                    closed = s.recv(65536) == b""  # session tickets may come first
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    closed = True
        finally:
            s.close()
        self.assertTrue(closed, "the connection outlived client.header_timeout_ms")

    def test_pipelined_requests_get_their_own_responses(self) -> None:
        sc = self.start_plain()
        markers = [marker() for _ in range(6)]
        modes = ["interim103", "plain", "stray", "continue100", "plain", "head_length"]
        payload = b""
        for m, mode in zip(markers, modes):
            method = "HEAD" if mode == "head_length" else "GET"
            payload += (f"{method} http://127.0.0.1:{self.up.port}/hostile/{mode}/{m} HTTP/1.1\r\n"
                        f"Host: 127.0.0.1:{self.up.port}\r\nX-Marker: {m}\r\n\r\n").encode()
        payload += (f"GET http://127.0.0.1:{self.up.port}/hostile/plain/last HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{self.up.port}\r\nX-Marker: last\r\nConnection: close\r\n\r\n"
                    ).encode()
        out = self.raw(sc, payload)
        finals = [part for part in out.split(b"HTTP/1.1 ")[1:] if not part.startswith(b"103")]
        got = [_header(p, b"X-Marker") for p in finals]
        self.assertEqual(got, [m.encode() for m in markers] + [b"last"])


class Reply:
    def __init__(self, status: int, headers: dict, body: bytes, interims: list) -> None:
        self.status, self.headers, self.body, self.interims = status, headers, body, interims

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def fetch(sc: sidecar.Sidecar, method: str, target: str, headers: dict,
          body: bytes | None = None) -> Reply:
    t = sc.raw_tunnel(HOST)
    try:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        t.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        data = b""
        while True:
            try:
                chunk = t.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            data += chunk
        return parse_replies(data, method)
    finally:
        t.close()


def parse_replies(data: bytes, method: str) -> Reply:
    interims = []
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"no complete response head in {data[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if 100 <= status < 200:
            interims.append(status)
            data = rest
            continue
        if method == "HEAD" or status in (204, 304):
            return Reply(status, headers, b"", interims)
        if "chunked" in headers.get("transfer-encoding", ""):
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    break
                body += rest[:size]
                rest = rest[size + 2:]
            return Reply(status, headers, body, interims)
        if "content-length" in headers:
            return Reply(status, headers, rest[:int(headers["content-length"])], interims)
        return Reply(status, headers, rest, interims)


def _header(response: bytes, name: bytes) -> bytes:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return b""


def _recv_until(s: ssl.SSLSocket, needle: bytes, must_contain: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if must_contain in data and data.rstrip().endswith(needle):
            break
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


if __name__ == "__main__":
    unittest.main()
