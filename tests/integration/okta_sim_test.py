"""The Okta simulator's own tests, driven directly (no sidecar): it must misbehave like Okta.

Run: cd tests/integration && PYTHONPATH=../support python3 -m unittest -v okta_sim_test
"""

from __future__ import annotations

import email.utils
import http.client
import json
import math
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import fault_server
import okta_sim
import test_pki
from sidecar import Response, read_response

PKI: test_pki.Pki
TMP: str
HOST = "acme.okta.com"
E0000047_SUMMARY = "API call exceeded rate limit due to too many requests."


def setUpModule() -> None:
    global PKI, TMP
    TMP = tempfile.mkdtemp(prefix="okta-sim-test-")
    PKI = test_pki.make_pki(TMP)


def tearDownModule() -> None:
    shutil.rmtree(TMP, ignore_errors=True)


def client_ctx() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=PKI.ca_cert)


class Client:
    """A keep-alive client to the simulator (TLS unless plain=True)."""

    def __init__(self, sim: okta_sim.OktaSimulator, plain: bool = False, timeout: float = 5.0):
        if plain:
            self.conn = http.client.HTTPConnection("127.0.0.1", sim.http_port, timeout=timeout)
        else:
            self.conn = http.client.HTTPSConnection("127.0.0.1", sim.port, timeout=timeout,
                                                    context=client_ctx())

    def req(self, method: str, path: str, headers: dict | None = None, body=None,
            **kw) -> Response:
        h = {"Host": HOST, "Accept": "application/json"}
        h.update(headers or {})
        self.conn.request(method, path, body=body, headers=h, **kw)
        return read_response(self.conn.getresponse())

    def get(self, path: str, **kw) -> Response:
        return self.req("GET", path, **kw)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sim_date(r: Response) -> float:
    return email.utils.parsedate_to_datetime(r.header("Date")).timestamp()


def wait_until(pred, timeout: float = 5.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class SimTestCase(unittest.TestCase):
    def sim(self, **kw) -> okta_sim.OktaSimulator:
        kw.setdefault("plain_http", True)
        s = okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, **kw).start()
        self.addCleanup(s.stop)
        return s

    def client(self, sim, **kw) -> Client:
        c = Client(sim, **kw)
        self.addCleanup(c.close)
        return c

    def assertOktaError(self, r: Response, status: int, code: str) -> dict:
        self.assertEqual(r.status, status, r.body)
        self.assertTrue(r.header("Content-Type", "").startswith("application/json"))
        body = r.json()
        self.assertEqual(set(body), {"errorCode", "errorSummary", "errorLink", "errorId",
                                     "errorCauses"})
        self.assertEqual(body["errorCode"], code)
        self.assertEqual(body["errorLink"], code)
        self.assertTrue(body["errorId"].startswith("oae"))
        return body


class ClassifierTest(unittest.TestCase):
    CASES = [
        ("GET", "/api/v1/users", "users"),
        ("POST", "/api/v1/users", "users"),
        ("GET", "/api/v1/users/00u1", "user"),
        ("GET", "/api/v1/users/00u1/", "user"),
        ("DELETE", "/api/v1/users/00u1", "user-write"),
        ("PUT", "/api/v1/users/00u1", "user-write"),
        ("GET", "/api/v1/users/me", "user-me"),
        ("POST", "/api/v1/users/00u1/lifecycle/activate", "users"),
        ("GET", "/api/v1/users/00u1/groups", "users"),
        ("GET", "/api/v1/groups", "groups"),
        ("GET", "/api/v1/groups/00g1", "group"),
        ("GET", "/api/v1/groups/00g1/users", "groups"),
        ("GET", "/api/v1/apps", "apps"),
        ("GET", "/api/v1/apps/0oa1", "app"),
        ("POST", "/api/v1/authn", "authn"),
        ("GET", "/api/v1/sessions/me", "sessions"),
        ("GET", "/api/v1/logs", "logs"),
        ("GET", "/api/v1/events", "events"),
        ("GET", "/api/v1/policies", "api-other"),
        ("POST", "/oauth2/v1/token", "token:org"),
        ("POST", "/oauth2/default/v1/token", "token:default"),
        ("POST", "/oauth2/aus1/v1/token", "token:aus1"),
        ("GET", "/oauth2/default/v1/authorize", "authorize:default"),
        ("GET", "/oauth2/v1/clients", "oauth-clients"),
        ("POST", "/oauth2/v1/introspect", "oauth-other"),
        ("GET", "/oauth2/default/v1/userinfo", "oauth-as-other:default"),
        ("GET", "/oauth2/v1/keys", None),
        ("GET", "/oauth2/default/v1/keys", None),
        ("GET", "/.well-known/openid-configuration", None),
        ("GET", "/oauth2/default/.well-known/oauth-authorization-server", None),
        ("GET", "/", None),
    ]

    def test_table(self) -> None:
        for method, path, key in self.CASES:
            with self.subTest(method=method, path=path):
                self.assertEqual(okta_sim.classify(method, path).bucket_key, key)

    def test_unknown_paths_do_not_exist(self) -> None:
        for path in ("/api/v1/nosuch", "/oauth2/v1/nosuch", "/", "/favicon.ico"):
            with self.subTest(path=path):
                self.assertFalse(okta_sim.classify("GET", path).exists)


class RateLimitTest(SimTestCase):
    def test_limit_enforced_per_window_with_okta_429(self) -> None:
        sim = self.sim(window_seconds=5, limits={"users": 5})
        c = self.client(sim)
        seen_remaining, resets, ids = [], set(), set()
        for _ in range(5):
            r = c.get("/api/v1/users")
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.header("X-Rate-Limit-Limit"), "5")
            seen_remaining.append(int(r.header("X-Rate-Limit-Remaining")))
            resets.add(int(r.header("X-Rate-Limit-Reset")))
            ids.add(r.header("X-Okta-Request-Id"))
            self.assertIsInstance(r.json(), list)
        self.assertEqual(seen_remaining, [4, 3, 2, 1, 0])
        self.assertEqual(len(resets), 1, "one window, one reset")
        reset = resets.pop()
        r = c.get("/api/v1/users")
        body = self.assertOktaError(r, 429, "E0000047")
        self.assertEqual(body["errorSummary"], E0000047_SUMMARY)
        self.assertEqual(body["errorCauses"], [])
        self.assertEqual(r.header("X-Rate-Limit-Limit"), "5")
        self.assertEqual(r.header("X-Rate-Limit-Remaining"), "0")
        self.assertEqual(int(r.header("X-Rate-Limit-Reset")), reset)
        self.assertIsNone(r.header("Retry-After"), "Okta sends no Retry-After")
        ids.add(r.header("X-Okta-Request-Id"))
        self.assertEqual(len(ids), 6, "request ids are unique")
        date = sim_date(r)
        self.assertLessEqual(abs(date - time.time()), 2)
        self.assertTrue(4 <= reset - date <= 6, (reset, date))
        [win] = sim.windows("users")
        self.assertEqual((win["processed"], win["rejected"], win["limit"]), (5, 1, 5))
        self.assertEqual(win["reset"], reset)
        st = sim.stats()
        self.assertEqual((st["processed"], st["rate_limited"], st["requests"]), (5, 1, 6))
        self.assertEqual(st["status_counts"], {200: 5, 429: 1})

    def test_rejected_write_is_not_processed(self) -> None:
        sim = self.sim(window_seconds=5, limits={"users": 1})
        c = self.client(sim)
        self.assertEqual(c.req("POST", "/api/v1/users", body=b'{"profile":{}}',
                               headers={"Content-Type": "application/json"}).status, 200)
        r = c.req("POST", "/api/v1/users", body=b'{"profile":{}}',
                  headers={"Content-Type": "application/json"})
        self.assertOktaError(r, 429, "E0000047")
        self.assertEqual(sim.stats()["processed"], 1)
        # The connection stays usable after a 429 (its body was consumed).
        self.assertEqual(c.get("/oauth2/v1/keys").status, 200)

    def test_window_opens_with_first_request_after_expiry(self) -> None:
        window = 1.0
        sim = self.sim(window_seconds=window, limits={"users": 2})
        c = self.client(sim)
        # Start mid-second so a clock-aligned window would be visibly different (and no
        # reset below sits near a whole second, where ceil() would be ambiguous).
        wait_until(lambda: 0.3 <= time.time() % 1 <= 0.6, timeout=2)
        t0 = time.time()
        r = c.get("/api/v1/users")
        self.assertEqual(int(r.header("X-Rate-Limit-Reset")), math.ceil(t0 + window))
        c.get("/api/v1/users")
        self.assertEqual(c.get("/api/v1/users").status, 429)
        first = sim.windows("users")[0]
        self.assertAlmostEqual(first["start"], t0, delta=0.1)
        self.assertAlmostEqual(first["end"], t0 + window, delta=0.1)
        # Idle past the end, plus a gap: the next window starts at the next request,
        # not at the previous end nor at a clock boundary.
        wait_until(lambda: time.time() >= first["end"] + 0.25, timeout=3)
        t1 = time.time()
        r = c.get("/api/v1/users")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Rate-Limit-Remaining"), "1")
        self.assertEqual(int(r.header("X-Rate-Limit-Reset")), math.ceil(t1 + window))
        wins = sim.windows("users")
        self.assertEqual(len(wins), 2)
        self.assertAlmostEqual(wins[1]["start"], t1, delta=0.1)
        self.assertGreaterEqual(wins[1]["start"] - wins[0]["end"], 0.2)
        self.assertEqual([w["processed"] for w in wins], [2, 1])
        self.assertEqual([w["rejected"] for w in wins], [1, 0])

    def test_buckets_are_independent_and_token_is_per_authorization_server(self) -> None:
        sim = self.sim(window_seconds=5, limits={"users": 1, "groups": 3, "token": 1})
        c = self.client(sim)
        self.assertEqual(c.get("/api/v1/users").status, 200)
        self.assertEqual(c.get("/api/v1/users").status, 429)
        r = c.get("/api/v1/groups")
        self.assertEqual((r.status, r.header("X-Rate-Limit-Remaining")), (200, "2"))
        # Sub-resources of a user count against the users-list bucket (docs/okta-behaviour.md).
        self.assertEqual(c.get("/api/v1/users/00u1/groups").status, 429)
        self.assertEqual(c.get("/api/v1/users/00u1").header("X-Rate-Limit-Limit"), "2000")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for as_path in ("/oauth2/default/v1/token", "/oauth2/aus9/v1/token", "/oauth2/v1/token"):
            with self.subTest(as_path=as_path):
                ok = c.req("POST", as_path, headers=form, body=b"grant_type=client_credentials")
                self.assertEqual(ok.status, 200)
                self.assertEqual(c.req("POST", as_path, headers=form, body=b"x=1").status, 429)

    def test_unlimited_endpoints_carry_no_rate_limit_headers(self) -> None:
        sim = self.sim(window_seconds=5, limits={"users": 1})
        c = self.client(sim)
        for path in ("/oauth2/v1/keys", "/oauth2/default/v1/keys",
                     "/.well-known/openid-configuration") * 3:
            r = c.get(path)
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.header("X-Rate-Limit-Limit"))
            self.assertIsNotNone(r.header("Date"))
            self.assertIsNotNone(r.header("X-Okta-Request-Id"))
        self.assertEqual(sim.stats()["buckets"], {})

    def test_unknown_path_is_okta_404(self) -> None:
        sim = self.sim()
        c = self.client(sim)
        for path in ("/api/v1/nosuch", "/nosuch"):
            with self.subTest(path=path):
                body = self.assertOktaError(c.get(path), 404, "E0000007")
                self.assertIn(path, body["errorSummary"])

    def test_clock_skew_shows_in_date_and_reset(self) -> None:
        for skew in (30.0, -30.0):
            with self.subTest(skew=skew):
                sim = self.sim(window_seconds=4, skew=skew)
                c = self.client(sim)
                r = c.get("/api/v1/users")
                date = sim_date(r)
                self.assertLessEqual(abs(date - (time.time() + skew)), 2)
                reset = int(r.header("X-Rate-Limit-Reset"))
                self.assertTrue(3 <= reset - date <= 5, (reset, date))
                self.assertLessEqual(abs(reset - (time.time() + skew + 4)), 2)

    def test_noisy_neighbour_consumes_the_current_window(self) -> None:
        sim = self.sim(window_seconds=5, limits={"users": 10})
        c = self.client(sim)
        self.assertEqual(sim.consume("users", 2), 2, "a neighbour may open the window")
        self.assertEqual(c.get("/api/v1/users").header("X-Rate-Limit-Remaining"), "7")
        self.assertEqual(sim.bucket_state("users")["remaining"], 7)
        self.assertEqual(sim.consume("users", 4), 4)
        self.assertEqual(c.get("/api/v1/users").header("X-Rate-Limit-Remaining"), "2")
        self.assertEqual(sim.consume("users", 100), 2, "capped at what is left")
        self.assertEqual(c.get("/api/v1/users").status, 429)
        [win] = sim.windows("users")
        self.assertEqual((win["neighbour"], win["processed"], win["rejected"]), (8, 2, 1))

    def test_runtime_limit_change(self) -> None:
        sim = self.sim(window_seconds=5, limits={"users": 1})
        c = self.client(sim)
        c.get("/api/v1/users")
        self.assertEqual(c.get("/api/v1/users").status, 429)
        sim.set_limit("users", 3)
        r = c.get("/api/v1/users")
        self.assertEqual((r.status, r.header("X-Rate-Limit-Remaining")), (200, "1"))


class ConcurrencyTest(SimTestCase):
    def test_concurrency_limit_429_shape(self) -> None:
        sim = self.sim(window_seconds=10, concurrency_limit=2, latency=1.0)
        results: list = []
        lock = threading.Lock()
        barrier = threading.Barrier(5)

        def one() -> None:
            with Client(sim, plain=True) as c:
                c.conn.connect()
                barrier.wait(5)
                r = c.get("/api/v1/users")
            with lock:
                results.append(r)

        threads = [threading.Thread(target=one) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(sorted(r.status for r in results), [200, 200, 429, 429, 429])
        for r in results:
            if r.status != 429:
                continue
            body = self.assertOktaError(r, 429, "E0000047")
            self.assertEqual(body["errorSummary"], E0000047_SUMMARY)
            self.assertEqual(r.header("X-Rate-Limit-Limit"), "0")
            self.assertEqual(r.header("X-Rate-Limit-Remaining"), "0")
            ahead = int(r.header("X-Rate-Limit-Reset")) - sim_date(r)
            self.assertTrue(113 <= ahead <= 116, ahead)
        st = sim.stats()
        self.assertEqual(st["concurrency_limited"], 3)
        self.assertGreaterEqual(st["max_inflight"], 3, "429s are in flight too, briefly")
        self.assertEqual(sim.windows("users")[0]["processed"], 2, "rejected ones not charged")
        self.assertEqual(sim.windows("users")[0]["rejected"], 0)
        with Client(sim, plain=True) as c:  # slots are free again
            self.assertEqual(c.get("/api/v1/users").status, 200)

    def test_latency_is_applied(self) -> None:
        sim = self.sim(latency=0.3)
        c = self.client(sim)
        t = time.monotonic()
        self.assertEqual(c.get("/api/v1/users").status, 200)
        self.assertGreaterEqual(time.monotonic() - t, 0.3)


class FaultTest(SimTestCase):
    def test_hang_forever_until_client_leaves(self) -> None:
        sim = self.sim()
        sim.add_fault("hang", "/api/v1/users")
        c = Client(sim, timeout=0.5)
        t = time.monotonic()
        with self.assertRaises((socket.timeout, TimeoutError)):
            c.get("/api/v1/users")
        self.assertGreaterEqual(time.monotonic() - t, 0.45)
        self.assertEqual(sim.stats()["inflight"], 1)
        c.close()
        self.assertTrue(wait_until(lambda: sim.stats()["inflight"] == 0, 3),
                        "the hung handler notices the client left")
        # Other paths are not affected.
        self.assertEqual(self.client(sim).get("/api/v1/groups").status, 200)

    def test_hang_then_answer(self) -> None:
        sim = self.sim()
        sim.add_fault("hang", seconds=0.4, count=1)
        c = self.client(sim)
        t = time.monotonic()
        self.assertEqual(c.get("/api/v1/users").status, 200)
        self.assertGreaterEqual(time.monotonic() - t, 0.4)
        t = time.monotonic()
        self.assertEqual(c.get("/api/v1/users").status, 200)
        self.assertLess(time.monotonic() - t, 0.3, "count=1: only the first hangs")

    def test_reset_before_answer(self) -> None:
        sim = self.sim()
        sim.add_fault("reset", "/api/v1/users", count=2)
        with self.assertRaises(ConnectionResetError):
            self.client(sim, plain=True).get("/api/v1/users")
        with self.assertRaises((ConnectionError, ssl.SSLError, http.client.RemoteDisconnected)):
            self.client(sim).get("/api/v1/users")
        self.assertEqual(self.client(sim).get("/api/v1/users").status, 200)
        self.assertEqual(sim.stats()["faults_applied"], {"reset": 2})
        self.assertEqual(sim.windows("users")[0]["processed"], 1, "reset requests not charged")

    def test_5xx_burst_then_recovery(self) -> None:
        for status in (500, 503):
            with self.subTest(status=status):
                sim = self.sim(window_seconds=5, limits={"users": 10})
                sim.add_fault("status", status=status, count=3,
                              retry_after=2 if status == 503 else None)
                c = self.client(sim)
                for _ in range(3):
                    r = c.get("/api/v1/users")
                    self.assertOktaError(r, status, "E0000009")
                    self.assertIsNone(r.header("X-Rate-Limit-Limit"))
                    self.assertIsNotNone(r.header("X-Okta-Request-Id"))
                    self.assertEqual(r.header("Retry-After"), "2" if status == 503 else None)
                r = c.get("/api/v1/users")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("X-Rate-Limit-Remaining"), "9", "5xx not charged")

    def test_slow_body_trickles(self) -> None:
        sim = self.sim()
        sim.add_fault("slow_body", chunk=20, interval=0.05, size=100)
        c = self.client(sim)
        t = time.monotonic()
        c.conn.request("GET", "/api/v1/users", headers={"Host": HOST})
        resp = c.conn.getresponse()
        t_head = time.monotonic() - t
        body = resp.read()
        t_body = time.monotonic() - t
        self.assertEqual(resp.status, 200)
        self.assertEqual(int(resp.getheader("Content-Length")), 100)
        self.assertEqual(len(body), 100)
        self.assertEqual(json.loads(body)["padding"][:3], "xxx")
        self.assertLess(t_head, 0.2, "headers come at once")
        self.assertGreaterEqual(t_body, 0.25, "body takes 5 x 50 ms")

    def test_chunked_response(self) -> None:
        sim = self.sim()
        sim.add_fault("chunked", chunks=3, interval=0.0)
        r = self.client(sim).get("/api/v1/users")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Transfer-Encoding"), "chunked")
        self.assertIsNone(r.header("Content-Length"))
        self.assertEqual(len(r.json()), 3)
        self.assertEqual(r.header("X-Rate-Limit-Remaining"), "599")

    def test_large_body(self) -> None:
        sim = self.sim()
        sim.add_fault("large", "/api/v1/logs", mib=2)
        c = self.client(sim)
        r = c.get("/api/v1/logs")
        self.assertEqual(len(r.body), 2 * okta_sim.MIB)
        self.assertEqual(int(r.header("Content-Length")), 2 * okta_sim.MIB)
        self.assertEqual(len(r.json()["padding"]), 2 * okta_sim.MIB - 14)
        self.assertEqual(c.get("/api/v1/logs").status, 200, "keep-alive survives")

    def test_echo_fixed_and_chunked_request_bodies(self) -> None:
        sim = self.sim()
        sim.add_fault("echo", "/api/v1/users*", method="POST")
        c = self.client(sim)
        payload = os.urandom(300_000)
        r = c.req("POST", "/api/v1/users", body=payload,
                  headers={"Content-Type": "application/octet-stream"})
        self.assertEqual((r.status, r.body), (200, payload))
        self.assertEqual(r.header("X-Sim-Request-Chunked"), "0")
        pieces = [payload[i:i + 70_000] for i in range(0, len(payload), 70_000)]
        r = c.req("POST", "/api/v1/users/00u1/lifecycle/activate", body=iter(pieces),
                  headers={"Content-Type": "application/octet-stream"}, encode_chunked=True)
        self.assertEqual((r.status, r.body), (200, payload))
        self.assertEqual(r.header("X-Sim-Request-Chunked"), "1")
        self.assertEqual(r.header("X-Sim-Body-Length"), str(len(payload)))
        self.assertIsInstance(c.get("/api/v1/users").json(), list, "GET is not echoed")

    def test_truncated_body(self) -> None:
        sim = self.sim()
        sim.add_fault("truncate", size=1000, send=100, count=1)
        c = self.client(sim)
        with self.assertRaises(http.client.IncompleteRead):
            c.get("/api/v1/users")

    def test_faults_switch_at_run_time(self) -> None:
        sim = self.sim()
        c = self.client(sim)
        sim.add_fault("status", "/api/v1/users", status=500)
        self.assertEqual(c.get("/api/v1/users").status, 500)
        self.assertEqual(c.get("/api/v1/users").status, 500)
        self.assertEqual(c.get("/api/v1/groups").status, 200)
        sim.clear_faults()
        self.assertEqual(c.get("/api/v1/users").status, 200)
        with self.assertRaises(ValueError):
            sim.add_fault("explode")


class StatsTest(SimTestCase):
    def test_connections_and_requests_per_connection(self) -> None:
        sim = self.sim(record=True)
        with Client(sim) as c:
            for _ in range(10):
                self.assertEqual(c.get("/api/v1/users").status, 200)
        for _ in range(3):
            with Client(sim, plain=True) as c:
                c.get("/api/v1/groups")
        self.assertTrue(wait_until(lambda: sim.stats()["open_connections"] == 0, 3))
        st = sim.stats()
        self.assertEqual(st["connections"], 4)
        self.assertEqual(sorted(st["requests_per_connection"]), [1, 1, 1, 10])
        self.assertEqual(st["requests"], 13)
        log = sim.request_log()
        self.assertEqual(len(log), 13)
        self.assertEqual(log[0][1:], ("GET", "/api/v1/users", 200))
        self.assertEqual(log[-1][1:], ("GET", "/api/v1/groups", 200))
        self.assertTrue(all(a[0] <= b[0] for a, b in zip(log, log[1:])))
        sim.reset_stats()
        self.assertEqual(sim.stats()["requests"], 0)
        self.assertEqual(sim.stats()["buckets"], {})

    def test_keep_alive_throughput(self) -> None:
        # Catches a Nagle/delayed-ACK stall (40 ms per response) or a per-request reconnect.
        sim = self.sim()
        c = self.client(sim)
        t = time.monotonic()
        for _ in range(1000):
            c.get("/api/v1/users/00u1")
        self.assertLess(time.monotonic() - t, 10.0)
        self.assertEqual(sim.stats()["connections"], 1)

    def test_stop_joins_handlers_with_idle_keep_alive_clients(self) -> None:
        sim = okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key).start()
        clients = [Client(sim) for _ in range(3)]
        for c in clients:
            c.get("/api/v1/users")
        t = time.monotonic()
        sim.stop()
        self.assertLess(time.monotonic() - t, 2.0)
        alive = [th for th in threading.enumerate() if th.name.startswith("okta-sim")]
        self.assertEqual(alive, [])
        for c in clients:
            c.close()


class AuthTest(SimTestCase):
    def token(self, **claims) -> str:
        now = int(time.time())
        base = {"iss": f"https://{HOST}", "aud": f"https://{HOST}", "iat": now,
                "exp": now + 600, "cid": "0oa1", "scp": ["okta.users.read"]}
        base.update(claims)
        return "Bearer " + okta_sim.make_jwt({k: v for k, v in base.items() if v is not None})

    def www(self, r: Response) -> dict:
        value = r.header("WWW-Authenticate")
        self.assertTrue(value and value.startswith("Bearer "), value)
        out = {}
        for part in value[len("Bearer "):].split(", "):
            k, _, v = part.partition("=")
            out[k] = v.strip('"')
        return out

    def test_bearer_checks(self) -> None:
        sim = self.sim(check_auth=True, window_seconds=5)
        c = self.client(sim)
        users = "/api/v1/users"
        ok = c.get(users, headers={"Authorization": self.token()})
        self.assertEqual(ok.status, 200, ok.body)
        manage = self.token(scp=["okta.users.manage"])
        self.assertEqual(c.get(users, headers={"Authorization": manage}).status, 200,
                         "manage implies read")
        cases = [
            ("expired", self.token(exp=int(time.time()) - 5), "The token has expired."),
            ("custom AS token on /api/v1", self.token(iss=f"https://{HOST}/oauth2/default"),
             None),
            ("wrong audience", self.token(aud="api://default"), None),
            ("not a JWT", "Bearer abc.def", None),
            ("bad base64", "Bearer a.!!!.c", None),
            ("no Bearer prefix", self.token()[len("Bearer "):], None),
            ("missing", None, None),
            ("not yet valid", self.token(nbf=int(time.time()) + 300), None),
        ]
        for name, value, description in cases:
            with self.subTest(name):
                r = c.get(users, headers={"Authorization": value} if value else {})
                self.assertOktaError(r, 401, "E0000011")
                w = self.www(r)
                self.assertEqual(w["error"], "invalid_token")
                self.assertEqual(w["resource"], users)
                self.assertEqual(w["realm"], f"https://{HOST}")
                if description:
                    self.assertEqual(w["error_description"], description)
                self.assertIsNotNone(r.header("X-Rate-Limit-Remaining"), "401s are charged")
        r = c.req("POST", users, headers={"Authorization": self.token(),
                                          "Content-Type": "application/json"}, body=b"{}")
        body = self.assertOktaError(r, 403, "E0000006")
        self.assertIn("permission", body["errorSummary"])
        w = self.www(r)
        self.assertEqual((w["error"], w["scope"]), ("insufficient_scope", "okta.users.manage"))
        for path, scope in (("/api/v1/groups", "okta.groups.read"),
                            ("/api/v1/apps", "okta.apps.read"), ("/api/v1/logs", "okta.logs.read")):
            with self.subTest(path=path):
                r = c.get(path, headers={"Authorization": self.token()})
                self.assertEqual((r.status, self.www(r)["scope"]), (403, scope))
                r = c.get(path, headers={"Authorization": self.token(scp=[scope])})
                self.assertEqual(r.status, 200)

    def test_custom_authorization_server_issuer(self) -> None:
        sim = self.sim(check_auth=True)
        c = self.client(sim)
        path = "/oauth2/default/v1/userinfo"
        org = self.token(scp=["openid"])
        r = c.get(path, headers={"Authorization": org})
        self.assertEqual(r.status, 401)
        self.assertEqual(self.www(r)["error"], "invalid_token")
        custom = self.token(iss=f"https://{HOST}/oauth2/default", aud="api://default",
                            scp=["openid"])
        self.assertEqual(c.get(path, headers={"Authorization": custom}).status, 200)

    def test_minted_token_is_accepted(self) -> None:
        sim = self.sim(check_auth=True)
        c = self.client(sim)
        r = c.req("POST", "/oauth2/v1/token",
                  headers={"Content-Type": "application/x-www-form-urlencoded"},
                  body=b"grant_type=client_credentials&scope=okta.users.read&client_id=0oa7")
        self.assertEqual(r.status, 200, r.body)
        tok = r.json()["access_token"]
        claims = okta_sim.decode_jwt_claims(tok)
        self.assertEqual((claims["iss"], claims["cid"], claims["scp"]),
                         (f"https://{HOST}", "0oa7", ["okta.users.read"]))
        self.assertEqual(c.get("/api/v1/users", headers={"Authorization": "Bearer " + tok}).status,
                         200)

    def test_expiry_is_judged_on_the_simulator_clock(self) -> None:
        sim = self.sim(check_auth=True, skew=-120)
        c = self.client(sim)
        stale_locally = self.token(exp=int(time.time()) - 60)
        self.assertEqual(c.get("/api/v1/users", headers={"Authorization": stale_locally}).status,
                         200)
        sim.skew = 120
        fresh_locally = self.token(exp=int(time.time()) + 60)
        self.assertEqual(c.get("/api/v1/users", headers={"Authorization": fresh_locally}).status,
                         401)

    def test_ssws_tokens(self) -> None:
        sim = self.sim(check_auth=True, ssws_tokens=("00good",))
        c = self.client(sim)
        self.assertEqual(c.get("/api/v1/users", headers={"Authorization": "SSWS 00good"}).status,
                         200)
        r = c.get("/api/v1/users", headers={"Authorization": "SSWS 00bad"})
        self.assertOktaError(r, 401, "E0000011")
        self.assertIsNone(r.header("WWW-Authenticate"))

    def test_auth_off_by_default_and_public_endpoints_need_none(self) -> None:
        sim = self.sim()
        self.assertEqual(self.client(sim).get("/api/v1/users").status, 200)
        sim2 = self.sim(check_auth=True)
        c = self.client(sim2)
        for path in ("/oauth2/v1/keys", "/.well-known/openid-configuration"):
            self.assertEqual(c.get(path).status, 200)


class CliTest(unittest.TestCase):
    def test_cli_prints_port_serves_and_is_controllable(self) -> None:
        sim_py = os.path.join(os.path.dirname(okta_sim.__file__), "okta_sim.py")
        proc = subprocess.Popen([sys.executable, sim_py, "--port", "0", "--cert",
                                 PKI.server_cert, "--key", PKI.server_key, "--window", "5",
                                 "--limit", "users=2", "--plain-http"],
                                stdout=subprocess.PIPE, text=True)
        try:
            info = json.loads(proc.stdout.readline())
            self.assertEqual(info["scheme"], "https")
            conn = http.client.HTTPSConnection("127.0.0.1", info["port"], timeout=5,
                                               context=client_ctx())
            statuses = []
            for _ in range(3):
                conn.request("GET", "/api/v1/users")
                statuses.append(read_response(conn.getresponse()).status)
            self.assertEqual(statuses, [200, 200, 429])
            conn.close()
            ctl = http.client.HTTPConnection("127.0.0.1", info["http_port"], timeout=5)
            ctl.request("POST", "/__sim/consume", body=json.dumps({"bucket": "groups", "n": 7}))
            self.assertEqual(read_response(ctl.getresponse()).json(), {"consumed": 7})
            ctl.request("POST", "/__sim/fault", body=json.dumps({"kind": "status", "status": 503,
                                                                 "count": 1}))
            self.assertEqual(read_response(ctl.getresponse()).status, 200)
            ctl.request("GET", "/api/v1/groups")
            self.assertEqual(read_response(ctl.getresponse()).status, 503)
            ctl.request("GET", "/api/v1/groups")
            r = read_response(ctl.getresponse())
            self.assertEqual(r.header("X-Rate-Limit-Remaining"), str(500 - 8))
            ctl.request("GET", "/__sim/stats")
            st = read_response(ctl.getresponse()).json()
            self.assertEqual(st["rate_limited"], 1)
            self.assertEqual(st["buckets"]["groups"][0]["neighbour"], 7)
            ctl.close()
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 0)
            self.assertEqual(json.loads(out.strip().splitlines()[-1])["stats"]["requests"], 5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stdout.close()


class PkiAndFaultServerTest(unittest.TestCase):
    def test_server_cert_valid_for_every_name(self) -> None:
        with okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key) as sim:
            for name in ("acme.okta.com", "localhost", "127.0.0.1"):
                with self.subTest(name=name):
                    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as raw:
                        with client_ctx().wrap_socket(raw, server_hostname=name) as tls:
                            self.assertEqual(tls.version()[:3], "TLS")
            with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as raw:
                with self.assertRaises(ssl.SSLCertVerificationError):
                    client_ctx().wrap_socket(raw, server_hostname="evil.example.com")
        with socket.socket() as s:
            s.settimeout(1)
            self.assertNotEqual(s.connect_ex(("127.0.0.1", sim.port)), 0, "stopped = closed")

    def test_fault_server_modes(self) -> None:
        with fault_server.FaultServer("blackhole", PKI.server_cert, PKI.server_key) as fs:
            with socket.create_connection(("127.0.0.1", fs.port), timeout=0.3) as s:
                with self.assertRaises(socket.timeout):
                    client_ctx().wrap_socket(s, server_hostname=HOST)
            fs.set_mode("reset")
            with self.assertRaises(ConnectionResetError):  # at connect, send or recv
                with socket.create_connection(("127.0.0.1", fs.port), timeout=2) as s:
                    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
                    s.recv(10)
            fs.set_mode("close")
            with socket.create_connection(("127.0.0.1", fs.port), timeout=2) as s:
                self.assertEqual(s.recv(10), b"")
            fs.set_mode("garbage")
            with socket.create_connection(("127.0.0.1", fs.port), timeout=2) as s:
                with self.assertRaises((ssl.SSLError, ConnectionError)):
                    client_ctx().wrap_socket(s, server_hostname=HOST)
            fs.set_mode("tls_hang")
            with socket.create_connection(("127.0.0.1", fs.port), timeout=2) as s:
                with client_ctx().wrap_socket(s, server_hostname=HOST) as tls:
                    tls.settimeout(0.3)
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    with self.assertRaises(socket.timeout):
                        tls.recv(10)
            self.assertEqual(fs.accepted, 5)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", fault_server.unused_port()), timeout=2)


if __name__ == "__main__":
    unittest.main()
