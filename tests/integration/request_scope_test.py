"""One access-log line and one okta_sidecar_requests_total increment per request, whatever way
the request ends (issue 13: the request scope ends every request in one place).

Exits driven: an upstream response inside an intercepted tunnel (plus the CONNECT's own line), a
local reply (host not allowed), a malformed head, a client that leaves while queued (499), an
unreachable upstream (502) and a proxy request refused for its target form (400).

Run: cd tests/integration && PYTHONPATH=../support python3 -m unittest -v request_scope_test
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import unittest
from collections import Counter

import okta_sim
import sidecar
import test_pki
from sidecar import metric, wait_until
from tools import free_port

HOST = "acme.okta.com"
QUEUED_HOST = "queue.okta.com"
DEAD_HOST = "dead.okta.com"
USERS = "/api/v1/users?limit=1"


def requests_total(sc: sidecar.Sidecar) -> float:
    return metric(sc, "okta_sidecar_requests_total")


def access_lines(sc: sidecar.Sidecar) -> list:
    return [r for r in sc.log_records() if r.get("msg") == "access"]


def raw(sc: sidecar.Sidecar, data: bytes) -> bytes:
    with socket.create_connection(sc.listen, timeout=5) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


class RequestScopeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.mkdtemp(prefix="scope-test-")
        cls.pki = test_pki.make_pki(cls.tmp, names=(HOST, QUEUED_HOST, DEAD_HOST))
        cls.sim = okta_sim.OktaSimulator(cls.pki.server_cert, cls.pki.server_key).start()
        # One request per 30 s window: the second waits in the queue (well within max_wait_ms).
        cls.slow = okta_sim.OktaSimulator(cls.pki.server_cert, cls.pki.server_key, window_seconds=30.0,
                                          limits={"users": 1}).start()
        cls.sc = sidecar.Sidecar({
            "intercept_hosts": [HOST, QUEUED_HOST, DEAD_HOST],
            "upstream": {"resolve": {f"{HOST}:443": f"127.0.0.1:{cls.sim.port}",
                                     f"{QUEUED_HOST}:443": f"127.0.0.1:{cls.slow.port}",
                                     f"{DEAD_HOST}:443": f"127.0.0.1:{free_port()}"},
                         "connect_timeout_ms": 2000},
            "retry": {"max_attempts": 1},
        }, trust_file=cls.pki.ca_cert).start()

    @classmethod
    def tearDownClass(cls) -> None:
        sidecar.shut_down(cls.sc, cls.sim, cls.slow, tmp=cls.tmp)

    def settle(self, lines_before: int, total_before: float, new: int) -> list:
        """Waits for `new` access lines, then checks the counter moved by exactly as many."""
        self.assertTrue(wait_until(lambda: len(access_lines(self.sc)) >= lines_before + new, 10),
                        access_lines(self.sc)[lines_before:])
        # Let any (wrong) extra line or increment arrive before counting.
        wait_until(lambda: False, 0.3)
        lines = access_lines(self.sc)[lines_before:]
        self.assertEqual(len(lines), new, lines)
        self.assertEqual(requests_total(self.sc) - total_before, new)
        return lines

    def test_every_exit_logs_and_counts_exactly_once(self) -> None:
        before_lines, before_total = len(access_lines(self.sc)), requests_total(self.sc)

        # 1. An upstream response inside an intercepted tunnel: the CONNECT's line and the GET's.
        conn = self.sc.connection(HOST)
        conn.request("GET", USERS)
        self.assertEqual(conn.getresponse().read() is not None, True)
        conn.close()
        # 2. A local reply: host not allowed.
        self.assertIn(b" 403 ", raw(self.sc, b"GET http://evil.example/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"))
        # 3. A malformed head, refused while it is read.
        self.assertIn(b" 400 ", raw(self.sc, b"GET http://acme.okta.com/ HTTP/1.1\r\nHost: acme.okta.com\r\n"
                                             b" folded\r\n\r\n"))
        # 4. A proxy request without an absolute-form target.
        self.assertIn(b" 400 ", raw(self.sc, b"GET /relative HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        # 5. An unreachable upstream: 502.
        dead = self.sc.connection(DEAD_HOST, timeout=20)
        dead.request("GET", USERS)
        self.assertEqual(dead.getresponse().status, 502)
        dead.close()
        lines = self.settle(before_lines, before_total, 7)
        statuses = Counter(r["status"] for r in lines)
        self.assertEqual(statuses, Counter({200: 3, 403: 1, 400: 2, 502: 1}), lines)
        self.assertEqual(len({r["req"] for r in lines}), len(lines), "one line per request id")

    def test_a_client_leaving_the_queue_logs_and_counts_once(self) -> None:
        before_lines, before_total = len(access_lines(self.sc)), requests_total(self.sc)
        first = self.sc.connection(QUEUED_HOST)
        first.request("GET", USERS)
        self.assertEqual(first.getresponse().status, 200)
        first.close()
        # The line is written once the response is out: wait for it before counting again.
        self.settle(before_lines, before_total, 2)
        before_lines, before_total = len(access_lines(self.sc)), requests_total(self.sc)
        queued = self.sc.connection(QUEUED_HOST, timeout=30)
        queued.request("GET", USERS)
        self.assertTrue(wait_until(lambda: metric(self.sc, "okta_sidecar_queue_depth") >= 1
                                   or any(b.get("queued") for b in self.sc.admin_json("/status")["buckets"]),
                                   5))
        queued.sock.shutdown(socket.SHUT_RDWR)
        queued.close()
        lines = self.settle(before_lines, before_total, 2)  # the CONNECT and the abandoned GET
        self.assertEqual(sorted(r["status"] for r in lines), [200, 499], lines)
        self.assertEqual([r.get("sidecar_error") for r in lines if r["status"] == 499], ["client_gone"])


if __name__ == "__main__":
    unittest.main()
