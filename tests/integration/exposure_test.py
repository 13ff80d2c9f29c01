"""No surface wider than it must be (issue 14), against the real binary:

- no cleartext to intercepted hosts: absolute-form http:// and plaintext inside CONNECT are
  refused 403 cleartext_refused (Okta's error JSON) by default, nothing reaches the upstream;
- the Host header's port is compared; Expect: 100-continue is ignored on HTTP/1.0;
- the admin port refuses requests naming another Host (DNS rebinding);
- the CA: a loaded CA whose name constraints leave out an intercept host stops the start
  (exit 2, naming the host); a key behind a symbolic link or owned by someone else is refused;
  a created state directory is 0700, the generated CA carries name constraints, and the
  fingerprint key is a 0600 file.

Every server is on 127.0.0.1.

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v exposure_test
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import unittest

import okta_sim
import sidecar
import test_pki

HOST = "acme.okta.com"
TMP: str
PKI: test_pki.Pki
SIM: okta_sim.OktaSimulator
SC: sidecar.Sidecar  # the product's defaults for access (no cleartext, port 443 only)


def setUpModule() -> None:
    global TMP, PKI, SIM, SC
    TMP = tempfile.mkdtemp(prefix="exposure-test-")
    PKI = test_pki.make_pki(TMP)
    SIM = okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, plain_http=True).start()
    SC = sidecar.Sidecar({
        "access": {"allow_cleartext": False, "allowed_ports": [443]},
        "upstream": {"resolve": {f"{HOST}:80": f"127.0.0.1:{SIM.http_port}"}},
    }, upstream_port=SIM.port, trust_file=PKI.ca_cert).start()


def tearDownModule() -> None:
    sidecar.shut_down(SC, SIM, tmp=TMP)


def upstream_seen() -> tuple:
    s = SIM.stats()
    return s["requests"], s["connections"]


def read_response(s) -> tuple:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
    length = int(headers.get("Content-Length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length], lines[0]


def raw(data: bytes, sc: sidecar.Sidecar = None) -> tuple:
    sc = sc or SC
    with socket.create_connection(sc.listen, timeout=10) as s:
        s.sendall(data)
        return read_response(s)


class Cleartext(unittest.TestCase):
    def assert_cleartext_refused(self, status: int, headers: dict, body: bytes) -> None:
        self.assertEqual(status, 403, body)
        self.assertEqual(headers.get("X-Okta-Sidecar-Error"), "cleartext_refused")
        doc = json.loads(body)
        self.assertEqual(set(doc), {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"})
        self.assertEqual(doc["errorCode"], "E0000006")
        self.assertIn("https://", doc["errorSummary"])

    def test_absolute_form_http_to_an_intercepted_host_is_refused(self) -> None:
        before = upstream_seen()
        for target in (f"http://{HOST}/api/v1/users", f"http://{HOST}:80/api/v1/users",
                       f"http://{HOST}:8080/api/v1/users", "http://other.okta.com/oauth2/v1/token"):
            with self.subTest(target):
                status, headers, body, _ = raw(
                    f"GET {target} HTTP/1.1\r\nHost: {target.split('/')[2]}\r\n"
                    f"Authorization: SSWS 00secretTokenThatMustNotTravel123\r\n\r\n".encode())
                self.assert_cleartext_refused(status, headers, body)
        self.assertEqual(upstream_seen(), before, "nothing may reach the upstream in clear")
        # Hosts we do not intercept are refused as before, for their own reason.
        status, headers, _, _ = raw(b"GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n")
        self.assertEqual((status, headers.get("X-Okta-Sidecar-Error")), (403, "host_not_allowed"))

    def test_plaintext_inside_connect_is_refused(self) -> None:
        before = upstream_seen()
        with socket.create_connection(SC.listen, timeout=10) as s:
            s.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
            status, _, _, _ = read_response(s)
            self.assertEqual(status, 200)
            s.sendall(f"GET /api/v1/users HTTP/1.1\r\nHost: {HOST}\r\n"
                      f"Authorization: Bearer a.b.c\r\n\r\n".encode())
            status, headers, body, _ = read_response(s)
            self.assert_cleartext_refused(status, headers, body)
        self.assertEqual(upstream_seen()[0], before[0])
        # TLS inside the same kind of tunnel works.
        r = SC.https_via_proxy("GET", f"https://{HOST}/api/v1/users")
        self.assertEqual(r.status, 200)

    def test_allow_cleartext_opts_back_in(self) -> None:
        # A plain upstream behind acme.okta.com:443 (a test rig): plaintext inside CONNECT is
        # served, and a Host without a port names the CONNECT authority.
        with sidecar.Sidecar({"access": {"allow_cleartext": True},
                              "upstream": {"resolve": {f"{HOST}:443": f"127.0.0.1:{SIM.http_port}"}}}) as sc:
            with socket.create_connection(sc.listen, timeout=10) as s:
                s.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
                self.assertEqual(read_response(s)[0], 200)
                s.sendall(f"GET /api/v1/users HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                self.assertEqual(read_response(s)[0], 200)
                s.sendall(f"GET /api/v1/users HTTP/1.1\r\nHost: {HOST}:8443\r\n\r\n".encode())
                self.assertEqual(read_response(s)[0], 403)

    def test_port_80_is_not_allowed_by_default(self) -> None:
        with socket.create_connection(SC.listen, timeout=10) as s:
            s.sendall(f"CONNECT {HOST}:80 HTTP/1.1\r\nHost: {HOST}:80\r\n\r\n".encode())
            status, headers, _, _ = read_response(s)
        self.assertEqual((status, headers.get("X-Okta-Sidecar-Error")), (403, "host_not_allowed"))


class HostPortAndExpect(unittest.TestCase):
    def test_host_header_port_must_match_the_connect_port(self) -> None:
        ctx = SC.client_ssl_context()
        for host_header, want in ((f"{HOST}:8443", 403), (f"{HOST}:443", 200), (HOST, 200)):
            with self.subTest(host_header):
                with socket.create_connection(SC.listen, timeout=10) as s:
                    s.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
                    self.assertEqual(read_response(s)[0], 200)
                    with ctx.wrap_socket(s, server_hostname=HOST) as tls:
                        tls.sendall(f"GET /api/v1/users HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode())
                        self.assertEqual(read_response(tls)[0], want)

    def test_expect_100_continue_is_ignored_on_http_1_0(self) -> None:
        ctx = SC.client_ssl_context()
        with socket.create_connection(SC.listen, timeout=10) as s:
            s.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
            self.assertEqual(read_response(s)[0], 200)
            with ctx.wrap_socket(s, server_hostname=HOST) as tls:
                tls.sendall(f"POST /api/v1/users HTTP/1.0\r\nHost: {HOST}\r\nExpect: 100-continue\r\n"
                            f"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}".encode())
                status, _, _, line = read_response(tls)
        self.assertNotEqual(status, 100, line)
        self.assertTrue(line.startswith("HTTP/1.0 "), line)


class AdminSurface(unittest.TestCase):
    def get(self, path: str, host: str) -> int:
        with socket.create_connection(SC.admin_listen, timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return read_response(s)[0]

    def test_requests_naming_another_host_are_refused(self) -> None:
        port = SC.admin_listen[1]
        for path in ("/status", "/", "/metrics", "/healthz"):
            with self.subTest(path):
                self.assertEqual(self.get(path, f"evil.example:{port}"), 403)
                self.assertEqual(self.get(path, f"127.0.0.1.nip.io:{port}"), 403)
                self.assertEqual(self.get(path, f"127.0.0.1:{port}"), 200)
                self.assertEqual(self.get(path, f"localhost:{port}"), 200)

    def test_configured_admin_names_are_accepted(self) -> None:
        with sidecar.Sidecar({"admin": {"allowed_hosts": ["sidecar.internal"]}}) as sc:
            with socket.create_connection(sc.admin_listen, timeout=10) as s:
                s.sendall(b"GET /status HTTP/1.1\r\nHost: sidecar.internal:9901\r\nConnection: close\r\n\r\n")
                self.assertEqual(read_response(s)[0], 200)


class StateAndCa(unittest.TestCase):
    def run_binary(self, cfg: dict, state: str) -> subprocess.CompletedProcess:
        path = os.path.join(state + "-config.json")
        base = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", "state_dir": state}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(sidecar.deep_merge(base, cfg), f)
        # Fails before listening, or is stopped by the timeout: either way bounded.
        try:
            return subprocess.run([sidecar.sidecar_binary(), "--config", path], capture_output=True,
                                  text=True, timeout=15, check=False)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"kept running: {e.stdout}") from e

    def test_fresh_state_dir_is_private_and_the_ca_constrained(self) -> None:
        with sidecar.Sidecar({"intercept_hosts": ["*.okta.com", "login.example.org"]}) as sc:
            key = os.stat(os.path.join(sc.state_dir, "fingerprint.key"))
            ca = os.stat(sc.ca_cert_path)
            self.assertEqual(stat.S_IMODE(key.st_mode), 0o600)
            self.assertEqual(stat.S_IMODE(ca.st_mode), 0o644)
            text = subprocess.run(["openssl", "x509", "-in", sc.ca_cert_path, "-noout", "-ext",
                                   "nameConstraints"], capture_output=True, text=True, check=True).stdout
            for name in ("DNS:okta.com", "DNS:oktapreview.com", "DNS:okta-emea.com", "DNS:okta-gov.com",
                         "DNS:login.example.org", "Excluded"):
                self.assertIn(name, text)
        fresh = os.path.join(TMP, "fresh", "state")
        with sidecar.Sidecar({"state_dir": fresh}) as sc:
            self.assertEqual(stat.S_IMODE(os.stat(fresh).st_mode), 0o700)

    def test_intercept_host_outside_a_loaded_cas_constraints_is_a_startup_error(self) -> None:
        state = os.path.join(TMP, "constrained")
        with sidecar.Sidecar({"state_dir": state}, keep_state=True):
            pass  # makes a CA constrained to Okta's domains
        r = self.run_binary({"intercept_hosts": ["*.okta.com", "*.example.com"]}, state)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("*.example.com", r.stdout + r.stderr)
        self.assertIn("name constraints", r.stdout + r.stderr)
        shutil.rmtree(state, ignore_errors=True)

    def test_ca_key_behind_a_link_or_owned_by_someone_else_is_refused(self) -> None:
        state = os.path.join(TMP, "linked")
        with sidecar.Sidecar({"state_dir": state}, keep_state=True):
            pass
        key = os.path.join(state, "ca.key")
        real = os.path.join(TMP, "elsewhere.key")
        shutil.move(key, real)
        os.symlink(real, key)
        r = self.run_binary({}, state)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("symbolic link", r.stdout + r.stderr)
        os.unlink(key)
        shutil.move(real, key)
        if os.geteuid() == 0:
            os.chown(key, 4242, 4242)
            r = self.run_binary({}, state)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("belongs to user id 4242", r.stdout + r.stderr)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
