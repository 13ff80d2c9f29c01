"""Attacks on the sidecar (issue 6, items 1 and 2): destination policy (never an open proxy),
request smuggling vectors over raw sockets, proxy authentication and the client allow-list.

Every refused request is checked twice: the answer (status, X-Okta-Sidecar-Error) and that
nothing reached an upstream (the simulator's request and connection counts do not move).

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v security_test
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import time
import ssl
import subprocess
import tempfile
import unittest

import okta_sim
import sidecar
import test_pki

HOST = "acme.okta.com"
PKI: test_pki.Pki
TMP: str
SIM: okta_sim.OktaSimulator
SC: sidecar.Sidecar


def loopback_name():
    """A DNS name other than `localhost` (the policy rejects that one outright) that the
    system resolver maps to a loopback address: typically the machine's own host name."""
    name = socket.gethostname()
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)}
    except OSError:
        return None
    if "." in name or not addrs or not all(a.startswith("127.") or a == "::1" for a in addrs):
        return None
    return name


LOOP_NAME = loopback_name()


def setUpModule() -> None:
    global PKI, TMP, SIM, SC
    TMP = tempfile.mkdtemp(prefix="security-test-")
    PKI = test_pki.make_pki(TMP)
    SIM = okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, plain_http=True).start()
    extra = [f"{LOOP_NAME}:{SIM.http_port}"] if LOOP_NAME else []
    SC = sidecar.Sidecar({
        # A name resolving to loopback is on the intercept list on purpose (with the
        # simulator's plain port allowed): the address guard must still refuse to connect.
        "intercept_hosts": ["*.okta.com", *extra],
        "access": {"allowed_ports": [443, 80, SIM.http_port]},
        "upstream": {"resolve": {f"{HOST}:80": f"127.0.0.1:{SIM.http_port}"}},
        "client": {"max_header_bytes": 16 * 1024},
    }, upstream_port=SIM.port, trust_file=PKI.ca_cert).start()


def tearDownModule() -> None:
    sidecar.shut_down(SC, SIM, tmp=TMP)


def upstream_seen() -> tuple:
    s = SIM.stats()
    return s["requests"], s["connections"]


def quiet_upstream_seen() -> tuple:
    """upstream_seen() once nothing from earlier tests is still on its way upstream."""
    last = upstream_seen()
    for _ in range(50):
        time.sleep(0.1)
        now = upstream_seen()
        if now == last and SIM.stats()["inflight"] == 0:
            return now
        last = now
    return last


def parse_response(sock) -> tuple:
    """(status or None, headers, body, closed_after)."""
    resp = http.client.HTTPResponse(sock)
    try:
        resp.begin()
    except (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine):
        return None, [], b"", True
    body = resp.read()
    sock.settimeout(1.0)
    try:
        closed = sock.recv(1) == b""
    except socket.timeout:
        closed = False
    except (ConnectionError, ssl.SSLError):
        closed = True
    return resp.status, resp.getheaders(), body, closed


def raw(sc: sidecar.Sidecar, data: bytes) -> tuple:
    s = socket.create_connection(sc.listen, timeout=5)
    try:
        s.sendall(data)
        return parse_response(s)
    finally:
        s.close()


def raw_in_tunnel(sc: sidecar.Sidecar, data: bytes, host: str = HOST) -> tuple:
    """Sends `data` inside an intercepted TLS tunnel (origin-form requests)."""
    tls = sc.raw_tunnel(host, timeout=5)
    try:
        tls.sendall(data)
        return parse_response(tls)
    finally:
        tls.close()


def hdr(headers: list, name: str):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return None


class DestinationPolicyTest(unittest.TestCase):
    # (name, raw request) -> must be 403 host_not_allowed (or 400 for a target that is not
    # even a valid authority), never a connection anywhere.
    CONNECT_CASES = [
        ("other host", "example.org:443"),
        ("allowed host, port not allowed", "acme.okta.com:8443"),
        ("allowed host, port 22", "acme.okta.com:22"),
        ("IPv4 loopback", "127.0.0.1:443"),
        ("IPv4 metadata", "169.254.169.254:443"),
        ("IPv6 loopback", "[::1]:443"),
        ("decimal IPv4", "2130706433:443"),
        ("localhost", "localhost:443"),
        ("localhost trailing dot", "localhost.:443"),
        ("suffix lookalike", "acme.okta.com.evil.example:443"),
        ("prefix lookalike", "evilokta.com:443"),
        ("bare apex", "okta.com:443"),
        ("userinfo trick", "acme.okta.com@evil.example:443"),
        ("percent-encoded", "acme%2eokta.com:443"),
    ]
    ABSOLUTE_CASES = [
        ("other host", "http://example.org/"),
        ("IPv4 literal", "http://127.0.0.1/"),
        ("metadata literal", "http://169.254.169.254/latest/meta-data/"),
        ("IPv6 literal", "http://[::1]/"),
        ("hex IPv4", "http://0x7f.0.0.1/"),
        ("userinfo", "http://acme.okta.com@evil.example/"),
        ("userinfo reversed", "http://evil.example@acme.okta.com/"),
        ("port not allowed", "http://acme.okta.com:8080/"),
        ("backslash", "http://evil.example\\.okta.com/"),
    ]

    def test_connect_refusals(self) -> None:
        before = upstream_seen()
        for name, target in self.CONNECT_CASES:
            with self.subTest(name):
                status, headers, body, closed = raw(
                    SC, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                self.assertIn(status, (400, 403), body)
                if status == 403:
                    self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "host_not_allowed")
                self.assertTrue(closed, "no tunnel after a refusal")
        self.assertEqual(upstream_seen(), before)

    def test_connect_refusal_is_exactly_403_for_plain_cases(self) -> None:
        for target in ("example.org:443", "acme.okta.com:8443", "127.0.0.1:443",
                       "169.254.169.254:443", "[::1]:443", "localhost:443"):
            with self.subTest(target):
                status, headers, _, _ = raw(
                    SC, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                self.assertEqual(status, 403)

    def test_absolute_form_refusals(self) -> None:
        before = upstream_seen()
        for name, url in self.ABSOLUTE_CASES:
            with self.subTest(name):
                status, headers, body, _ = raw(
                    SC, f"GET {url} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                self.assertIn(status, (400, 403), body)
        self.assertEqual(upstream_seen(), before)

    def test_host_header_disagreeing_with_absolute_url(self) -> None:
        before = upstream_seen()
        for host in ("evil.example", "127.0.0.1", "acme.okta.com.evil.example", "other.okta.com"):
            with self.subTest(host):
                status, headers, body, _ = raw(
                    SC, f"GET http://{HOST}/api/v1/users HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                self.assertEqual(status, 403, body)
                self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "host_not_allowed")
        self.assertEqual(upstream_seen(), before)
        # Agreeing Host (case and default port aside) is fine.
        status, _, _, _ = raw(
            SC, f"GET http://{HOST}/api/v1/users HTTP/1.1\r\nHost: ACME.okta.com:80\r\n\r\n".encode())
        self.assertEqual(status, 200)

    def test_host_header_inside_tunnel_must_match_connect_host(self) -> None:
        before = upstream_seen()
        status, headers, _, _ = raw_in_tunnel(
            SC, b"GET /api/v1/users HTTP/1.1\r\nHost: evil.example\r\n\r\n")
        self.assertEqual(status, 403)
        status, _, _, _ = raw_in_tunnel(
            SC, b"GET http://evil.example/api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\n\r\n")
        self.assertEqual(status, 403)
        self.assertEqual(upstream_seen()[0], before[0])
        status, _, _, _ = raw_in_tunnel(SC, b"GET /api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\n\r\n")
        self.assertEqual(status, 200)

    @unittest.skipUnless(LOOP_NAME, "no host name resolving to loopback on this machine")
    def test_allowed_name_resolving_to_loopback_is_refused(self) -> None:
        # <hostname>:<sim port> is on the intercept list and its port allowed, but it resolves
        # to 127.0.0.1 and no upstream.resolve entry vouches for it: the address guard refuses.
        before = upstream_seen()
        status, headers, body, _ = raw(
            SC, f"GET http://{LOOP_NAME}:{SIM.http_port}/api/v1/users HTTP/1.1\r\n"
                f"Host: {LOOP_NAME}:{SIM.http_port}\r\n\r\n".encode())
        self.assertEqual(status, 403, body)
        self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "host_not_allowed")
        self.assertEqual(upstream_seen(), before, "no connection to the loopback address")


# Smuggling vectors (RFC 9112 §6.1, §6.3, §5.1, §5.2; RFC 9110 §5.5): the head is complete and
# well delimited, so any answer other than 400 means the sidecar accepted an ambiguous message.
def _post(extra: str, body: bytes = b"", target: str = f"http://{HOST}/api/v1/users") -> bytes:
    return (f"POST {target} HTTP/1.1\r\nHost: {HOST}\r\n" + extra + "\r\n").encode("latin-1") + body


HEAD_VECTORS = [
    ("CL and TE", _post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    ("TE and CL", _post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", b"0\r\n\r\n")),
    ("double CL differing", _post("Content-Length: 4\r\nContent-Length: 5\r\n", b"abcde")),
    ("CL list differing", _post("Content-Length: 4, 5\r\n", b"abcde")),
    ("CL negative", _post("Content-Length: -1\r\n")),
    ("CL plus sign", _post("Content-Length: +4\r\n", b"abcd")),
    ("CL hex", _post("Content-Length: 0x4\r\n", b"abcd")),
    ("CL overflow", _post("Content-Length: 99999999999999999999999\r\n")),
    ("TE gzip", _post("Transfer-Encoding: gzip\r\n", b"abcd")),
    ("TE chunked then gzip", _post("Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n")),
    ("TE chunked twice", _post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                               b"0\r\n\r\n")),
    ("TE unknown", _post("Transfer-Encoding: chunkedx\r\n", b"0\r\n\r\n")),
    ("TE space before colon", _post("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n")),
    ("TE vertical tab", _post("Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n")),
    ("TE in HTTP/1.0", ("POST http://acme.okta.com/api/v1/users HTTP/1.0\r\nHost: acme.okta.com\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode()),
    ("obs-fold", _post("X-Folded: a\r\n b\r\n")),
    ("obs-fold TE", _post("X-A: 1\r\nTransfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n")),
    ("bare CR in value", _post("X-A: a\rb\r\nContent-Length: 0\r\n")),
    ("bare CR line end", b"GET http://acme.okta.com/api/v1/users HTTP/1.1\rHost: acme.okta.com\r\n\r\n"),
    ("NUL in value", _post("X-A: a\x00b\r\nContent-Length: 0\r\n")),
    ("NUL in name", _post("X-\x00A: b\r\nContent-Length: 0\r\n")),
    ("NUL in target", b"GET http://acme.okta.com/api/v1/us\x00ers HTTP/1.1\r\nHost: acme.okta.com\r\n\r\n"),
    ("space in name", _post("Content Length: 0\r\n")),
    ("empty name", _post(": x\r\n")),
    ("duplicate Host", b"GET http://acme.okta.com/api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\n"
                       b"Host: evil.example\r\n\r\n"),
    ("two spaces in request line", b"GET  http://acme.okta.com/api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\n\r\n"),
    ("tab in request line", b"GET\thttp://acme.okta.com/api/v1/users HTTP/1.1\r\nHost: acme.okta.com\r\n\r\n"),
    ("lowercase http version", b"GET http://acme.okta.com/api/v1/users http/1.1\r\nHost: acme.okta.com\r\n\r\n"),
    ("HTTP/1.1 without Host", b"GET http://acme.okta.com/api/v1/users HTTP/1.1\r\n\r\n"),
    ("high byte in name", _post("X-\xffA: b\r\nContent-Length: 0\r\n")),
]

# Vectors in the body framing: the head was fine, so the sidecar may already have forwarded
# it; what must never happen is a complete request reaching Okta (the simulator counts
# `processed` only after the whole body was read and framed correctly).
BODY_VECTORS = [
    ("chunk size not hex", _post("Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n")),
    ("chunk size overflow", _post("Transfer-Encoding: chunked\r\n",
                                  b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n")),
    ("chunk size negative", _post("Transfer-Encoding: chunked\r\n", b"-1\r\nabc\r\n0\r\n\r\n")),
    ("chunk without CRLF", _post("Transfer-Encoding: chunked\r\n", b"3\r\nabcXX0\r\n\r\n")),
    ("chunk extension too long", _post("Transfer-Encoding: chunked\r\n",
                                       b"3;" + b"e" * 20000 + b"\r\nabc\r\n0\r\n\r\n")),
    ("bare LF in chunk size line", _post("Transfer-Encoding: chunked\r\n", b"3\nabc\r\n0\r\n\r\n")),
]


class SmugglingTest(unittest.TestCase):
    def test_head_vectors_get_400_and_are_never_forwarded(self) -> None:
        before = quiet_upstream_seen()
        for name, data in HEAD_VECTORS:
            with self.subTest(name):
                status, headers, body, closed = raw(SC, data)
                self.assertEqual(status, 400, f"{name}: {body[:200]!r}")
                self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "bad_request")
                self.assertTrue(closed, "the connection cannot be trusted after a bad head")
        # "Never forwarded" is the simulator's request count; its connection count can move
        # when an earlier test's pooled connection is re-established, which forwards nothing.
        self.assertEqual(upstream_seen()[0], before[0], f"forwarded: {before} -> {upstream_seen()}")
        print(f"\n[figure] smuggling head vectors tried: {len(HEAD_VECTORS)} (absolute-form)")

    def test_head_vectors_inside_intercepted_tunnel(self) -> None:
        picked = [(n, d.replace(f"http://{HOST}/".encode(), b"/", 1)) for n, d in HEAD_VECTORS
                  if n not in ("HTTP/1.1 without Host",)]
        before = upstream_seen()[0]
        for name, data in picked:
            with self.subTest(name):
                status, headers, body, closed = raw_in_tunnel(SC, data)
                self.assertEqual(status, 400, f"{name}: {body[:200]!r}")
        self.assertEqual(upstream_seen()[0], before)

    def test_body_framing_vectors(self) -> None:
        before = SIM.stats()["processed"]
        for name, data in BODY_VECTORS:
            with self.subTest(name):
                status, headers, body, closed = raw(SC, data)
                self.assertIn(status, (400, 413, None), f"{name}: {status} {body[:200]!r}")
                self.assertTrue(closed)
        self.assertEqual(SIM.stats()["processed"], before, "no smuggled request was processed")
        print(f"[figure] smuggling body vectors tried: {len(BODY_VECTORS)}")

    def test_pipelined_second_request_after_bad_one_is_not_forwarded(self) -> None:
        before = upstream_seen()
        data = (_post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")
                + f"GET http://{HOST}/api/v1/users/smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        status, _, _, closed = raw(SC, data)
        self.assertEqual(status, 400)
        self.assertTrue(closed)
        self.assertEqual(upstream_seen(), before)

    def test_valid_requests_still_pass(self) -> None:
        SIM.add_fault("echo", path="/api/v1/users/ok-chunked", count=1)
        status, headers, body, _ = raw(
            SC, _post("Transfer-Encoding: chunked\r\n", b"3;ext=1\r\nabc\r\n0\r\n\r\n",
                      target=f"http://{HOST}/api/v1/users/ok-chunked"))
        self.assertEqual((status, body), (200, b"abc"))
        status, _, _, _ = raw(SC, _post("Content-Length: 4\r\nContent-Length: 4\r\n", b"abcd"))
        self.assertIn(status, (200, 400), "identical duplicates: RFC 9112 §6.3 allows either")


class ProxyAuthTest(unittest.TestCase):
    def test_407_without_or_with_wrong_credentials(self) -> None:
        env = dict(os.environ, IT_PROXY_CRED="app:s3cret-pw")
        cfg = {"access": {"proxy_auth_env": "IT_PROXY_CRED"},
               "upstream": {"resolve": {f"{HOST}:80": f"127.0.0.1:{SIM.http_port}"}}}
        with sidecar.Sidecar(cfg, upstream_port=SIM.port, trust_file=PKI.ca_cert, env=env) as sc:
            before = upstream_seen()
            good = base64.b64encode(b"app:s3cret-pw").decode()
            for name, auth in [("none", None),
                               ("wrong password", base64.b64encode(b"app:wrong").decode()),
                               ("wrong user", base64.b64encode(b"ap:s3cret-pw").decode()),
                               ("prefix of password", base64.b64encode(b"app:s3cret").decode()),
                               ("not base64", "!!!!")]:
                with self.subTest(name):
                    extra = f"Proxy-Authorization: Basic {auth}\r\n" if auth else ""
                    status, headers, body, _ = raw(
                        sc, f"GET http://{HOST}/api/v1/users HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n".encode())
                    self.assertEqual(status, 407)
                    self.assertTrue(hdr(headers, "Proxy-Authenticate").startswith("Basic"))
                    self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "proxy_auth_required")
                    status, headers, _, _ = raw(
                        sc, f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n{extra}\r\n".encode())
                    self.assertEqual(status, 407)
            self.assertEqual(upstream_seen(), before)
            status, _, _, _ = raw(
                sc, f"GET http://{HOST}/api/v1/users HTTP/1.1\r\nHost: {HOST}\r\n"
                    f"Proxy-Authorization: Basic {good}\r\n\r\n".encode())
            self.assertEqual(status, 200)
            env_c = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            p = subprocess.run(["curl", "-sS", "--max-time", "10", "-x", sc.proxy_url,
                                "--proxy-user", "app:s3cret-pw", "--cacert", sc.ca_cert_path,
                                "-o", "/dev/null", "-w", "%{http_code}",
                                f"https://{HOST}/api/v1/users"],
                               capture_output=True, text=True, env=env_c, timeout=20, check=False)
            self.assertEqual(p.stdout, "200", p.stderr)
            logs = "\n".join(sc.logs())
            self.assertNotIn("s3cret", logs)
            self.assertNotIn(good, logs)


class ClientAllowListTest(unittest.TestCase):
    def test_source_not_in_cidr_list_is_refused(self) -> None:
        with sidecar.Sidecar({"access": {"allowed_clients": ["10.0.0.0/8", "::1/128"]}},
                             upstream_port=SIM.port, trust_file=PKI.ca_cert) as sc:
            before = upstream_seen()
            status, headers, _, closed = raw(
                sc, f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
            self.assertEqual(status, 403)
            self.assertEqual(hdr(headers, "X-Okta-Sidecar-Error"), "client_not_allowed")
            self.assertTrue(closed)
            self.assertEqual(upstream_seen(), before)

    def test_source_in_cidr_list_is_served(self) -> None:
        with sidecar.Sidecar({"access": {"allowed_clients": ["127.0.0.0/8"]}},
                             upstream_port=SIM.port, trust_file=PKI.ca_cert) as sc:
            r = sc.https_via_proxy("GET", f"https://{HOST}/api/v1/users")
            self.assertEqual(r.status, 200)


if __name__ == "__main__":
    unittest.main()
