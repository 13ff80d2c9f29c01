"""The core forward proxy (issue 2) end to end: the real okta-sidecar binary between real
clients (curl, http.client, raw sockets) and the Okta simulator / raw TLS servers on loopback.

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v core_proxy_test
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import fault_server
import okta_sim
import sidecar
import test_pki

metric = sidecar.metric

HOST = "acme.okta.com"
FIXED_HOST = "fixed.okta.com"        # served by a raw TLS server with a fixed byte-exact answer
TUNNEL_HOST = "tunnel.example.com"   # tunnel_hosts: the sidecar must not look inside
OKTA_ID = re.compile(r"^[A-Za-z0-9]{27}$")

PKI: test_pki.Pki
TMP: str
SIM: okta_sim.OktaSimulator
SC: sidecar.Sidecar
FIXED: "FixedServer"


class FixedServer:
    """TLS on loopback; answers every request head with the same raw bytes (keep-alive)."""

    def __init__(self, pki: test_pki.Pki, response: bytes) -> None:
        self.response = response
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.server_cert, pki.server_key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stop_ = threading.Event()
        self.heads: list = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop_.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            tls = self.ctx.wrap_socket(conn, server_side=True)
            buf = b""
            while not self.stop_.is_set():
                while b"\r\n\r\n" not in buf:
                    data = tls.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                self.heads.append(head)
                tls.sendall(self.response)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self.stop_.set()
        self.thread.join(2)
        self.listener.close()


# What the fixed server sends; the client must see every end-to-end header unchanged and in
# order, and the body byte for byte (hop-by-hop Connection/Keep-Alive may be rewritten).
FIXED_HEADERS = [
    ("Date", "Tue, 01 Dec 2026 10:00:00 GMT"),
    ("Content-Type", "application/json; charset=UTF-8"),
    ("X-Okta-Request-Id", "Zfixed-Request-Id_0123456789"),
    ("X-Rate-Limit-Limit", "600"),
    ("X-Rate-Limit-Remaining", "599"),
    ("X-Rate-Limit-Reset", "1796119260"),
    ("Set-Cookie", "sid=abc; Path=/; Secure"),
    ("Set-Cookie", "JSESSIONID=xyz; HttpOnly"),
    ("Link", '<https://fixed.okta.com/api/v1/users?after=00u1&limit=2>; rel="next"'),
    ("Cache-Control", "no-cache, no-store"),
    ("x-lower-case", "MiXeD value  with  spaces"),
]
FIXED_BODY = b'[{"id":"00u1","profile":{"login":"a@example.com","note":"\xc3\xa9\\u0000"}}]'


def fixed_response() -> bytes:
    lines = ["HTTP/1.1 200 OK"] + [f"{k}: {v}" for k, v in FIXED_HEADERS]
    lines.append(f"Content-Length: {len(FIXED_BODY)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + FIXED_BODY


def setUpModule() -> None:
    global PKI, TMP, SIM, SC, FIXED
    TMP = tempfile.mkdtemp(prefix="core-proxy-test-")
    PKI = test_pki.make_pki(TMP, names=(HOST, FIXED_HOST, TUNNEL_HOST, "127.0.0.1"))
    SIM = okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, plain_http=True).start()
    FIXED = FixedServer(PKI, fixed_response())
    SC = sidecar.Sidecar({
        "tunnel_hosts": [TUNNEL_HOST],
        "upstream": {"resolve": {f"{HOST}:80": f"127.0.0.1:{SIM.http_port}",
                                 f"{FIXED_HOST}:443": f"127.0.0.1:{FIXED.port}",
                                 f"{TUNNEL_HOST}:443": f"127.0.0.1:{SIM.port}"},
                     "response_timeout_ms": 1000},
        "retry": {"max_attempts": 1},
        "circuit_breaker": {"failure_threshold": 1000},
        "client": {"max_body_bytes": 12 * 1024 * 1024, "max_header_bytes": 16 * 1024},
    }, upstream_port=SIM.port, trust_file=PKI.ca_cert).start()


def tearDownModule() -> None:
    if not SC.alive():
        print("shared sidecar died; log tail:\n" + "\n".join(SC.logs()[-30:]))
    code = SC.stop()
    if code != 0:
        raise AssertionError(f"shared sidecar exit code {code}")
    FIXED.stop()
    SIM.stop()
    shutil.rmtree(TMP, ignore_errors=True)



def raw_exchange(sc: sidecar.Sidecar, data: bytes, timeout: float = 5.0):
    """Sends raw bytes to the proxy port; returns (status or None, headers, body, closed)."""
    s = socket.create_connection(sc.listen, timeout=timeout)
    try:
        s.sendall(data)
        resp = http.client.HTTPResponse(s)
        try:
            resp.begin()
        except (http.client.RemoteDisconnected, ConnectionError):
            return None, [], b"", True
        body = resp.read()
        hdrs = resp.getheaders()
        status = resp.status
        # After the answer the sidecar must close (or keep alive when allowed): peek.
        s.settimeout(1.0)
        try:
            closed = s.recv(1) == b""
        except socket.timeout:
            closed = False
        except ConnectionError:
            closed = True
        return status, hdrs, body, closed
    finally:
        s.close()


def hdr(headers: list, name: str):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


def curl_env() -> dict:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


class InterceptTest(unittest.TestCase):
    def test_curl_intercepted_https_headers_and_body_byte_for_byte(self) -> None:
        hdrfile = os.path.join(TMP, "curl-headers")
        bodyfile = os.path.join(TMP, "curl-body")
        proc = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-x", SC.proxy_url, "--cacert", SC.ca_cert_path,
             "-D", hdrfile, "-o", bodyfile, "--proxy-header", "X-Trace: 1",
             f"https://{FIXED_HOST}/api/v1/users?limit=2"],
            capture_output=True, env=curl_env(), timeout=20, check=False)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(bodyfile, "rb") as f:
            self.assertEqual(f.read(), FIXED_BODY)
        with open(hdrfile, "rb") as f:
            blocks = f.read().decode("latin-1").split("\r\n\r\n")
        # Block 0 is the proxy's CONNECT answer, block 1 the origin's response.
        self.assertTrue(blocks[0].startswith("HTTP/1.1 200"), blocks[0])
        lines = blocks[1].split("\r\n")
        self.assertEqual(lines[0], "HTTP/1.1 200 OK")
        got = [tuple(l.split(": ", 1)) for l in lines[1:] if l]
        end_to_end = [(k, v) for k, v in got if k.lower() not in ("connection", "keep-alive")]
        self.assertEqual(end_to_end, FIXED_HEADERS + [("Content-Length", str(len(FIXED_BODY)))])
        self.assertTrue(FIXED.heads, "the fixed server saw the request")
        head = FIXED.heads[-1].decode("latin-1")
        self.assertTrue(head.startswith("GET /api/v1/users?limit=2 HTTP/1.1\r\n"), head)
        self.assertIn(f"\r\nHost: {FIXED_HOST}", head)
        self.assertNotIn("X-Trace", head, "proxy headers stay with the proxy")

    def test_curl_intercepted_echo_binary_body(self) -> None:
        SIM.add_fault("echo", path="/api/v1/users/echo1", count=1)
        payload = os.urandom(100_000)
        path = os.path.join(TMP, "payload.bin")
        with open(path, "wb") as f:
            f.write(payload)
        out = os.path.join(TMP, "echo.bin")
        proc = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-x", SC.proxy_url, "--cacert", SC.ca_cert_path,
             "-D", "-", "-o", out, "-H", "Content-Type: application/octet-stream",
             "--data-binary", f"@{path}", f"https://{HOST}/api/v1/users/echo1"],
            capture_output=True, env=curl_env(), timeout=20, check=False)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), payload)
        text = proc.stdout.decode("latin-1")
        rid = re.search(r"(?im)^X-Okta-Request-Id: (\S+)\r$", text)
        self.assertIsNotNone(rid, text)
        self.assertRegex(rid.group(1), OKTA_ID)
        self.assertRegex(text, r"(?im)^X-Sim-Body-Sha256: " + hashlib.sha256(payload).hexdigest())

    def test_absolute_form_plain_http(self) -> None:
        before = SIM.stats()["requests"]
        r = SC.curl("-i", f"http://{HOST}/api/v1/users?limit=2")
        self.assertEqual(r.returncode, 0, r.stderr)
        status_line = r.stdout.split("\n", 1)[0]
        self.assertEqual(status_line, "HTTP/1.1 200 OK")
        body = json.loads(r.stdout.split("\n\n", 1)[1])
        self.assertEqual(len(body), 2)
        self.assertRegex(r.stdout, r"(?im)^X-Okta-Request-Id: [A-Za-z0-9]{27}$")
        self.assertEqual(SIM.stats()["requests"], before + 1)

    def test_blind_tunnel_is_not_intercepted(self) -> None:
        # The client trusts only the *upstream's* CA: success proves the sidecar did not
        # terminate TLS (its own CA would not verify).
        before = SIM.stats()["requests"]
        proc = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-x", SC.proxy_url, "--cacert", PKI.ca_cert,
             "-o", "/dev/null", "-w", "%{http_code}", f"https://{TUNNEL_HOST}/api/v1/groups"],
            capture_output=True, text=True, env=curl_env(), timeout=20, check=False)
        self.assertEqual((proc.returncode, proc.stdout), (0, "200"), proc.stderr)
        self.assertEqual(SIM.stats()["requests"], before + 1)
        # And with the sidecar's CA only, the handshake must fail (it is the origin's cert).
        bad = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-x", SC.proxy_url, "--cacert", SC.ca_cert_path,
             "-o", "/dev/null", f"https://{TUNNEL_HOST}/api/v1/groups"],
            capture_output=True, text=True, env=curl_env(), timeout=20, check=False)
        self.assertEqual(bad.returncode, 60, bad.stderr)  # curl: peer certificate not trusted

    def test_refused_host_connect_and_absolute_form(self) -> None:
        before = SIM.stats()["requests"]
        proc = subprocess.run(
            ["curl", "-sS", "--max-time", "10", "-x", SC.proxy_url, "-o", "/dev/null",
             "-w", "%{http_connect}", "https://example.org/"],
            capture_output=True, text=True, env=curl_env(), timeout=20, check=False)
        self.assertEqual(proc.stdout, "403", proc.stderr)  # the CONNECT answer
        status, headers, body, closed = raw_exchange(
            SC, b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
        self.assertEqual(status, 403)
        self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "host_not_allowed")
        self.assertTrue(closed, "a refused CONNECT closes the connection")
        err = json.loads(body)
        self.assertEqual(set(err), {"errorCode", "errorSummary", "errorLink", "errorId",
                                    "errorCauses"})
        self.assertEqual(err["errorCauses"], [])
        r = SC.http_via_proxy("GET", "http://example.org/index.html")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.header("X-Okta-Sidecar-Error"), "host_not_allowed")
        self.assertIn("errorSummary", r.json())
        self.assertEqual(SIM.stats()["requests"], before)


class KeepAliveTest(unittest.TestCase):
    def test_client_and_upstream_connections_are_reused(self) -> None:
        # Warm the pool, then count: 2 client connections x 5 requests each, sequentially,
        # must use one upstream TCP connection and two client connections.
        SC.https_via_proxy("GET", f"https://{HOST}/api/v1/users?limit=1")
        sim_conns = SIM.stats()["connections"]
        intercept_before = metric(SC, "okta_sidecar_client_connections_total", kind="intercept")
        for _ in range(2):
            conn = SC.connection(HOST)
            try:
                first_sock = None
                for i in range(5):
                    r = sidecar.request(conn, "GET", f"/api/v1/users?limit=1&i={i}")
                    self.assertEqual(r.status, 200)
                    self.assertNotEqual(r.header("Connection", "").lower(), "close")
                    first_sock = first_sock or conn.sock
                    self.assertIs(conn.sock, first_sock, "client connection kept alive")
            finally:
                conn.close()
        self.assertEqual(SIM.stats()["connections"], sim_conns, "upstream connection reused")
        self.assertEqual(metric(SC, "okta_sidecar_client_connections_total", kind="intercept"),
                         intercept_before + 2)

    def test_one_connection_naming_several_destinations(self) -> None:
        # The route is worked out once per connection and destination: a connection that names
        # another host, or another port or spelling of one, must get that one's answer.
        before = SIM.stats()["requests"]
        conn = http.client.HTTPConnection(*SC.listen, timeout=10)
        try:
            first_sock = None
            for url, status, error in [
                    (f"http://{HOST}/api/v1/users?limit=1", 200, None),
                    ("http://example.org/index.html", 403, "host_not_allowed"),
                    (f"http://{HOST}/api/v1/users?limit=1", 200, None),
                    (f"http://{HOST.upper()}./api/v1/users?limit=1", 200, None),
                    (f"http://{HOST}:22/api/v1/users?limit=1", 403, "host_not_allowed"),
                    (f"http://{HOST}/api/v1/users?limit=1", 200, None)]:
                conn.request("GET", url)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, status, url)
                self.assertEqual(r.getheader("X-Okta-Sidecar-Error"), error, url)
                first_sock = first_sock or conn.sock
                self.assertIs(conn.sock, first_sock, "one client connection throughout")
        finally:
            conn.close()
        self.assertEqual(SIM.stats()["requests"], before + 4)

    def test_pipelined_requests_answered_in_order(self) -> None:
        s = socket.create_connection(SC.listen, timeout=5)
        try:
            reqs = b"".join(
                f"GET http://{HOST}/api/v1/users/p{i} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
                for i in range(3))
            s.sendall(reqs)
            # One buffered reader for all three answers: HTTPResponse(sock) makes a new buffer
            # each time, and the first would swallow the bytes of the next answer.
            reader = s.makefile("rb")

            class _KeepOpen:  # HTTPResponse closes its reader after each body
                def __getattr__(self, name):
                    return getattr(reader, name)

                def close(self):
                    pass

            class _Shared:
                def makefile(self, *args, **kwargs):
                    return _KeepOpen()

            for i in range(3):
                resp = http.client.HTTPResponse(_Shared())
                resp.begin()
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(resp.read())["path"], f"/api/v1/users/p{i}")
        finally:
            s.close()


class ParkedConnectionTest(unittest.TestCase):
    """Between requests a client connection waits a moment in its coroutine, then parked: its
    socket's wait alone, without frames (issue 13). Parked, it must still serve its next request
    (plain and inside an intercepted tunnel), close at the keep-alive timeout counted from its
    last response, and go at once when a drain starts."""

    IDLE_MS = 1500

    def sidecar(self) -> sidecar.Sidecar:
        return sidecar.Sidecar({
            "upstream": {"resolve": {f"{HOST}:80": f"127.0.0.1:{SIM.http_port}"}},
            "client": {"idle_timeout_ms": self.IDLE_MS, "drain_timeout_ms": 20000},
        }, upstream_port=SIM.port, trust_file=PKI.ca_cert).start()

    @staticmethod
    def closed_after(sock: socket.socket, since: float) -> float:
        """Seconds from `since` until the proxy closes `sock` (reads nothing else)."""
        sock.settimeout(10)
        try:
            data = sock.recv(1)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if data:
            raise AssertionError(f"unexpected bytes on an idle connection: {data!r}")
        return time.monotonic() - since

    def test_parked_connections_serve_time_out_and_drain(self) -> None:
        sc = self.sidecar()
        try:
            tls = sc.connection(HOST)
            plain = http.client.HTTPConnection(*sc.listen, timeout=10)
            for i in range(3):
                time.sleep(0.2)  # well past the moment's wait: parked
                r = sidecar.request(tls, "GET", f"/api/v1/users/parked{i}")
                self.assertEqual(r.status, 200)
                r = sidecar.request(plain, "GET", f"http://{HOST}/api/v1/users/parked{i}",
                                    {"Host": HOST})
                self.assertEqual(r.status, 200)
                self.assertEqual(r.json()["path"], f"/api/v1/users/parked{i}")
            done = time.monotonic()
            for conn in (tls, plain):
                waited = self.closed_after(conn.sock, done)
                self.assertGreater(waited, self.IDLE_MS / 1000 - 0.3, "closed before the timeout")
                self.assertLess(waited, self.IDLE_MS / 1000 + 2.0, "kept past the timeout")
                conn.close()

            # A drain closes parked connections at once, not at its 20 s deadline.
            parked = sc.connection(HOST)
            self.assertEqual(sidecar.request(parked, "GET", "/api/v1/users/drain").status, 200)
            time.sleep(0.2)
            start = time.monotonic()
            sc.proc.send_signal(signal.SIGTERM)
            self.assertLess(self.closed_after(parked.sock, start), 5.0)
            self.assertEqual(sc.proc.wait(10), 0)
            parked.close()
        finally:
            sc.stop()


class StreamingTest(unittest.TestCase):
    def post_chunked(self, path: str, pieces: list) -> sidecar.Response:
        """POSTs `pieces` chunked on a tunnel; the simulator echoes the body it received."""
        SIM.add_fault("echo", path=path, count=1)
        conn = SC.connection(HOST)
        try:
            conn.request("POST", path, body=iter(pieces),
                         headers={"Content-Type": "application/octet-stream"}, encode_chunked=True)
            return sidecar.read_response(conn.getresponse())
        finally:
            conn.close()

    def test_chunked_request_body_reaches_upstream(self) -> None:
        pieces = [os.urandom(1000) for _ in range(7)]
        r = self.post_chunked("/api/v1/users/chunked-in", pieces)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"".join(pieces))
        # A body up to client.max_buffered_body_bytes is read and checked whole before it goes
        # upstream (issue 12), so it leaves with a Content-Length, and can be replayed.
        self.assertEqual(r.header("X-Sim-Request-Chunked"), "0")

    def test_large_chunked_request_body_streams_upstream_chunked(self) -> None:
        pieces = [os.urandom(64 * 1024) for _ in range(20)]  # 1.25 MiB > 1 MiB kept in memory
        r = self.post_chunked("/api/v1/users/chunked-large", pieces)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"".join(pieces))
        self.assertEqual(r.header("X-Sim-Request-Chunked"), "1")

    def test_chunked_response_body_reaches_client(self) -> None:
        SIM.add_fault("chunked", path="/api/v1/users/chunked-out", count=1, chunks=5,
                      interval=0.02)
        conn = SC.connection(HOST)
        try:
            conn.request("GET", "/api/v1/users/chunked-out")
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
            body = json.loads(resp.read())
            self.assertEqual(body["path"], "/api/v1/users/chunked-out")
            # The connection survives a chunked response.
            r = sidecar.request(conn, "GET", "/api/v1/users/after")
            self.assertEqual(r.status, 200)
        finally:
            conn.close()

    def test_10_mib_streamed_both_ways_with_bounded_memory(self) -> None:
        # Warm-up: TLS contexts, the leaf for the host, pool connection, allocator arenas.
        SIM.add_fault("echo", path="/api/v1/users/big", count=2)
        small = os.urandom(2 * 1024 * 1024)
        r = SC.https_via_proxy("POST", f"https://{HOST}/api/v1/users/big", body=small)
        self.assertEqual(r.status, 200)
        pid = SC.proc.pid
        hwm_before = vm_kib(pid, "VmHWM")
        size = 10 * 1024 * 1024
        payload = os.urandom(size)
        conn = SC.connection(HOST, timeout=60)
        try:
            conn.request("POST", "/api/v1/users/big", body=payload,
                         headers={"Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            h = hashlib.sha256()
            got = 0
            while chunk := resp.read(256 * 1024):
                h.update(chunk)
                got += len(chunk)
        finally:
            conn.close()
        self.assertEqual(got, size)
        self.assertEqual(h.hexdigest(), hashlib.sha256(payload).hexdigest())
        growth_kib = vm_kib(pid, "VmHWM") - hwm_before
        print(f"\n[figure] 10 MiB up + 10 MiB down: sidecar VmHWM growth {growth_kib} KiB")
        # Streaming relays 16 KiB at a time; a body that was buffered instead would add at
        # least 10 MiB (20 if both ways). 3 MiB leaves room for the allocator keeping freed
        # TLS record buffers and the 1 MiB replay buffer's high-water mark, but not for a copy.
        if os.environ.get("OKTA_SIDECAR_SANITIZED"):
            # ASan's allocator quarantines freed memory, so the high-water mark measures the
            # quarantine, not the relay; the release stage asserts the bound.
            self.skipTest(f"memory bound not meaningful under a sanitizer (growth {growth_kib} KiB)")
        self.assertLess(growth_kib, 3 * 1024)


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


class FailureAnswersTest(unittest.TestCase):
    def test_hung_upstream_gives_504_within_timeout(self) -> None:
        SIM.add_fault("hang", path="/api/v1/users/hang504", count=1)
        conn = SC.connection(HOST)
        try:
            t0 = time.monotonic()
            r = sidecar.request(conn, "GET", "/api/v1/users/hang504")
            elapsed = time.monotonic() - t0
            self.assertEqual(r.status, 504)
            self.assertEqual(r.header("X-Okta-Sidecar-Error"), "upstream_timeout")
            self.assertGreaterEqual(elapsed, 0.9)
            self.assertLess(elapsed, 1.0 + 0.5, "response_timeout_ms=1000 plus slack")
            self.assertEqual(r.json()["errorCauses"], [])
        finally:
            conn.close()

    def test_unreachable_upstream_gives_502(self) -> None:
        port = fault_server.unused_port()
        with sidecar.Sidecar({"upstream": {"connect_timeout_ms": 1000}},
                             upstream_port=port, trust_file=PKI.ca_cert) as sc:
            t0 = time.monotonic()
            r = sc.https_via_proxy("GET", f"https://{HOST}/api/v1/users")
            self.assertEqual(r.status, 502)
            self.assertEqual(r.header("X-Okta-Sidecar-Error"), "upstream_unreachable")
            self.assertLess(time.monotonic() - t0, 5)

    def test_untrusted_upstream_certificate_gives_502(self) -> None:
        # Upstream verification is on: without trust_file the test CA is unknown.
        with sidecar.Sidecar(upstream_port=SIM.port) as sc:
            before = SIM.stats()["requests"]
            r = sc.https_via_proxy("GET", f"https://{HOST}/api/v1/users")
            self.assertEqual(r.status, 502)
            self.assertEqual(r.header("X-Okta-Sidecar-Error"), "upstream_unreachable")
            self.assertEqual(SIM.stats()["requests"], before)


class MalformedTest(unittest.TestCase):
    CASES = [
        ("garbage request line", b"HELLO\r\n\r\n"),
        ("no version", b"GET /\r\n\r\n"),
        ("bad version", b"GET http://acme.okta.com/ HTTP/9.9\r\nHost: acme.okta.com\r\n\r\n"),
        ("space in header name", b"GET http://acme.okta.com/ HTTP/1.1\r\nHost: acme.okta.com\r\nBad Name: x\r\n\r\n"),
        ("header without colon", b"GET http://acme.okta.com/ HTTP/1.1\r\nHost: acme.okta.com\r\nNoColon\r\n\r\n"),
        ("invalid content-length", b"POST http://acme.okta.com/api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\nContent-Length: abc\r\n\r\n"),
        ("origin-form to the proxy", b"GET /api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\n\r\n"),
        ("CONNECT without port", b"CONNECT acme.okta.com HTTP/1.1\r\nHost: acme.okta.com\r\n\r\n"),
        ("control char in target", b"GET http://acme.okta.com/a\x01b HTTP/1.1\r\nHost: acme.okta.com\r\n\r\n"),
    ]

    def test_malformed_requests_get_400_and_are_not_forwarded(self) -> None:
        before = SIM.stats()["requests"]
        for name, data in self.CASES:
            with self.subTest(name):
                status, headers, body, closed = raw_exchange(SC, data)
                self.assertEqual(status, 400, body)
                self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "bad_request")
                self.assertIn("errorSummary", json.loads(body))
                self.assertTrue(closed, "after a 400 the connection is closed")
        self.assertEqual(SIM.stats()["requests"], before)

    def test_oversized_headers_get_431(self) -> None:
        before = SIM.stats()["requests"]
        big = b"X-Big: " + b"a" * (20 * 1024) + b"\r\n"
        status, headers, body, closed = raw_exchange(
            SC, b"GET http://acme.okta.com/api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\n"
            + big + b"\r\n")
        self.assertEqual(status, 431)
        self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "bad_request")
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
        status, headers, _, _ = raw_exchange(
            SC, b"GET http://acme.okta.com/api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\n"
            + many + b"\r\n")
        self.assertEqual(status, 431, "more than max_header_count (100) fields")
        self.assertEqual(SIM.stats()["requests"], before)

    def test_body_over_limit_gets_413(self) -> None:
        before = SIM.stats()["requests"]
        status, headers, body, _ = raw_exchange(
            SC, b"POST http://acme.okta.com/api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\n"
            b"Content-Length: %d\r\n\r\n" % (13 * 1024 * 1024))
        self.assertEqual(status, 413)
        self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "bad_request")
        self.assertEqual(SIM.stats()["requests"], before)

    def test_chunked_body_over_limit_gets_413_or_close(self) -> None:
        # A chunked body's size is only known while streaming: once it passes the limit the
        # sidecar answers 413 if it has not answered yet.
        with sidecar.Sidecar({"client": {"max_body_bytes": 100_000},
                              "upstream": {"resolve": {f"{HOST}:80": f"127.0.0.1:{SIM.http_port}"}}},
                             upstream_port=SIM.port, trust_file=PKI.ca_cert) as sc:
            SIM.add_fault("echo", path="/api/v1/users/chunk-limit", count=1)
            s = socket.create_connection(sc.listen, timeout=10)
            try:
                s.sendall(b"POST http://acme.okta.com/api/v1/users/chunk-limit HTTP/1.1\r\n"
                          b"Host: acme.okta.com\r\nTransfer-Encoding: chunked\r\n\r\n")
                try:
                    for _ in range(30):
                        s.sendall(b"2000\r\n" + b"x" * 0x2000 + b"\r\n")
                except OSError:
                    pass
                resp = http.client.HTTPResponse(s)
                try:
                    resp.begin()
                    self.assertEqual(resp.status, 413)
                except (http.client.RemoteDisconnected, ConnectionError):
                    pass  # closed without an answer is acceptable once bytes were sent on
            finally:
                s.close()
            SIM.clear_faults()


class RedactionTest(unittest.TestCase):
    def test_tokens_never_logged_at_trace(self) -> None:
        ssws = "00SSWSsecretTokenValue_abc123XYZ"
        jwt = okta_sim.make_jwt({"iss": f"https://{HOST}", "exp": int(time.time()) + 600,
                                 "scp": ["okta.users.read"]})
        proxy_pw = "proxyPassw0rdSecret"
        with sidecar.Sidecar({"upstream": {"resolve": {f"{HOST}:80": f"127.0.0.1:{SIM.http_port}"}}},
                             upstream_port=SIM.port, trust_file=PKI.ca_cert,
                             log_level="trace") as sc:
            r = sc.https_via_proxy("GET", f"https://{HOST}/api/v1/users?limit=1",
                                   headers={"Authorization": f"SSWS {ssws}",
                                            "Cookie": "sid=cookieSecretValue"})
            self.assertEqual(r.status, 200)
            r = sc.https_via_proxy("GET", f"https://{HOST}/api/v1/users/me",
                                   headers={"Authorization": f"Bearer {jwt}"})
            self.assertEqual(r.status, 200)
            r = sc.http_via_proxy("GET", f"http://{HOST}/api/v1/users?access_token={jwt}",
                                  headers={"Authorization": f"SSWS {ssws}",
                                           "Proxy-Authorization": f"Basic {proxy_pw}"})
            self.assertEqual(r.status, 200)
            # A 401 goes through the diagnosis path, which logs at warn.
            SIM.add_fault("status", path="/api/v1/groups", count=1, status=500)
            sc.https_via_proxy("GET", f"https://{HOST}/api/v1/groups",
                               headers={"Authorization": f"Bearer {jwt}"})
            sc.wait_for_log(lambda rec: rec.get("msg") == "access" and rec.get("status") == 500,
                            timeout=5)
            code = sc.stop()
            self.assertEqual(code, 0)
            text = "\n".join(sc.logs())
        self.assertGreater(len(text), 0)
        for secret in (ssws, jwt, jwt.split(".")[1], jwt.split(".")[2], "cookieSecretValue",
                       proxy_pw):
            self.assertNotIn(secret, text)


class AdminAndLifecycleTest(unittest.TestCase):
    def test_healthz_readyz_ca_crt(self) -> None:
        r = SC.get_admin("/healthz")
        self.assertEqual((r.status, r.body.strip()), (200, b"ok"))
        self.assertEqual(SC.get_admin("/readyz").status, 200)
        r = SC.get_admin("/ca.crt")
        self.assertEqual(r.status, 200)
        with open(SC.ca_cert_path, "rb") as f:
            self.assertEqual(r.body.strip(), f.read().strip())
        self.assertIn(b"-----BEGIN CERTIFICATE-----", r.body)

    def test_check_config_exit_codes(self) -> None:
        good = os.path.join(TMP, "good.json")
        bad = os.path.join(TMP, "bad.json")
        with open(good, "w") as f:
            json.dump({"upstream": {"connect_timeout_ms": 100}}, f)
        with open(bad, "w") as f:
            json.dump({"upstream": {"conect_timeout_ms": 100}, "listen": "nowhere"}, f)
        p = subprocess.run([sidecar.sidecar_binary(), "--config", good, "--check-config"],
                           capture_output=True, text=True, timeout=10, check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = subprocess.run([sidecar.sidecar_binary(), "--config", bad, "--check-config"],
                           capture_output=True, text=True, timeout=10, check=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("upstream.conect_timeout_ms", p.stdout + p.stderr)
        self.assertIn("listen", p.stdout + p.stderr)
        p = subprocess.run([sidecar.sidecar_binary(), "--log-level", "loud", "--check-config"],
                           capture_output=True, text=True, timeout=10, check=False)
        self.assertEqual(p.returncode, 2)

    def test_sigterm_drains_in_flight_request_and_exits_0(self) -> None:
        sc = sidecar.Sidecar(upstream_port=SIM.port, trust_file=PKI.ca_cert).start()
        try:
            SIM.add_fault("hang", path="/api/v1/users/slow-drain", count=1, seconds=1.0)
            result: dict = {}

            def call() -> None:
                try:
                    result["r"] = sc.https_via_proxy("GET", f"https://{HOST}/api/v1/users/slow-drain")
                except Exception as e:  # noqa: BLE001 - reported below
                    result["e"] = e

            t = threading.Thread(target=call)
            t.start()
            deadline = time.monotonic() + 5
            while SIM.stats()["inflight"] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            sc.proc.send_signal(signal.SIGTERM)
            t.join(10)
            code = sc.proc.wait(10)
        finally:
            sc.stop()
        self.assertNotIn("e", result)
        self.assertEqual(result["r"].status, 200, "the in-flight request finished")
        self.assertEqual(code, 0)


if __name__ == "__main__":
    unittest.main()
