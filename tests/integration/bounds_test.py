"""Bounded state and bounded load (issue 14): the real binary against the Okta simulator.

- Tens of thousands of client-chosen names (authorization-server ids in POST
  /oauth2/{id}/v1/token, each with its own credential, and refused host names) leave RSS,
  /status and /metrics within fixed bounds.
- client.max_connections and rate_limit.max_queue_total are reached and held, and every
  accepted request still gets exactly one answer.
- client.request_timeout_ms ends slow uploads (buffered and streamed bodies).

Every server is on 127.0.0.1; every load loop is bounded in count and in time.

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v bounds_test
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import unittest

import okta_sim
import sidecar
import test_pki

HOST = "acme.okta.com"
# Under ASan/TSan (scripts/test sets this) every request costs several times more and RSS
# measures shadow memory and the quarantine: fewer names, same size bounds, no RSS bound.
SANITIZED = bool(os.environ.get("OKTA_SIDECAR_SANITIZED"))
TMP: str
PKI: test_pki.Pki
SIM: okta_sim.OktaSimulator


def setUpModule() -> None:
    global TMP, PKI, SIM
    TMP = tempfile.mkdtemp(prefix="bounds-test-")
    PKI = test_pki.make_pki(TMP)
    # Generous limits: this suite is about the sidecar's memory, not Okta's budget.
    SIM = okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, plain_http=True,
                                 limits={"oauth2-token": 10 ** 6, "other-api": 10 ** 6,
                                         "users": 10 ** 6}).start()


def tearDownModule() -> None:
    SIM.stop()
    shutil.rmtree(TMP, ignore_errors=True)


def plain_sidecar(extra: dict) -> sidecar.Sidecar:
    cfg = sidecar.deep_merge({"upstream": {"resolve": {f"{HOST}:80": f"127.0.0.1:{SIM.http_port}"}}}, extra)
    return sidecar.Sidecar(cfg, upstream_port=SIM.port, trust_file=PKI.ca_cert)


def rss_bytes(sc: sidecar.Sidecar) -> int:
    with open(f"/proc/{sc.proc.pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def series_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def run_workers(n_workers: int, items: list, work, deadline: float) -> list:
    """Runs work(conn, item) over items on n_workers keep-alive connections to the proxy;
    returns every answer status (one per item, or an exception name)."""
    out: list = [None] * len(items)

    def worker(k: int) -> None:
        conn = None
        for i in range(k, len(items), n_workers):
            if time.monotonic() > deadline:
                out[i] = "deadline"
                continue
            for _ in range(2):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(*SC_LISTEN[0], timeout=30)
                    out[i] = work(conn, items[i])
                    break
                except (OSError, http.client.HTTPException) as e:
                    out[i] = type(e).__name__
                    if conn is not None:
                        conn.close()
                    conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


SC_LISTEN: list = [None]


def token_request(conn: http.client.HTTPConnection, i: int) -> int:
    conn.request("POST", f"http://{HOST}/oauth2/aus{i:06d}x/v1/token", body=b"grant_type=x",
                 headers={"Content-Type": "application/x-www-form-urlencoded",
                          "Authorization": f"Bearer client-chosen-credential-{i}"})
    r = conn.getresponse()
    r.read()
    return r.status


def refused_host_request(conn: http.client.HTTPConnection, i: int) -> int:
    conn.request("GET", f"http://h{i}.refused-{i % 97}.example/p{i}")
    r = conn.getresponse()
    r.read()
    return r.status


class ClientChosenNames(unittest.TestCase):
    IDS = 3000 if SANITIZED else 12000    # authorization-server ids, each with its own credential
    HOSTS = 3000 if SANITIZED else 12000  # refused host names
    TIME_LIMIT_S = 50  # the whole scenario, so the suite stays well under a minute

    def test_tens_of_thousands_of_names_keep_rss_status_and_metrics_bounded(self) -> None:
        with plain_sidecar({}) as sc:
            SC_LISTEN[0] = sc.listen
            deadline = time.monotonic() + self.TIME_LIMIT_S
            # Warm-up: the pools, the TLS contexts and the allocator's arenas exist afterwards.
            warm = run_workers(4, list(range(200)), token_request, deadline)
            self.assertTrue(all(s == 200 for s in warm), warm[:5])
            rss_before = rss_bytes(sc)
            ids = run_workers(4, list(range(200, 200 + self.IDS)), token_request, deadline)
            hosts = run_workers(4, list(range(self.HOSTS)), refused_host_request, deadline)
            self.assertLess(time.monotonic(), deadline, "the load did not finish in time")
            self.assertEqual([s for s in ids if s != 200][:5], [])
            self.assertEqual([s for s in hosts if s != 403][:5], [])
            rss_after = rss_bytes(sc)
            status = sc.get_admin("/status").body
            metrics = sc.get_admin("/metrics").body.decode()
            series = series_count(metrics)
            doc = json.loads(status)
            buckets = [b for b in doc["buckets"] if b["bucket"].startswith("oauth2-token")]
            print(f"\n[bounds] {self.IDS + 200} ids + {self.HOSTS} refused hosts: /metrics "
                  f"{len(metrics)} bytes, {series} series; /status {len(status)} bytes, "
                  f"{len(doc['buckets'])} buckets; RSS {rss_before // 1024} KiB -> "
                  f"{rss_after // 1024} KiB", file=sys.stderr)
            # 64 ids of the host keep their bucket, the rest share oauth2-token:other.
            self.assertLessEqual(len(buckets), 64 + 1)
            self.assertIn("oauth2-token:other", {b["bucket"] for b in buckets})
            self.assertLess(len(status), 64 * 1024)
            self.assertLess(len(metrics), 256 * 1024)
            self.assertLess(series, 2500)
            self.assertNotIn("refused", metrics)
            self.assertLessEqual(sidecar.metric(sc, "okta_sidecar_state_entries", map="buckets"), 1024)
            self.assertLessEqual(sidecar.metric(sc, "okta_sidecar_state_entries", map="breakers"), 1024)
            self.assertLessEqual(sidecar.metric(sc, "okta_sidecar_state_entries", map="upstream_origins"), 4)
            # A fixed bound on growth: bucket maps, label sets and queues no longer grow with names.
            if not SANITIZED:
                self.assertLess(rss_after - rss_before, 24 * 1024 * 1024,
                                f"RSS grew {rss_before} -> {rss_after}")
            # Metric labels come from bounded sets: hosts configured or "other"; ids capped.
            token_series = {l.split('bucket="')[1].split('"')[0] for l in metrics.splitlines()
                            if l.startswith("okta_sidecar_requests_total") and "oauth2-token" in l}
            self.assertLessEqual(len(token_series), 64 + 1)


class Caps(unittest.TestCase):
    def test_connection_cap_is_reached_and_held_and_every_request_answered(self) -> None:
        cap, clients = 4, 12
        with plain_sidecar({"client": {"max_connections": cap}}) as sc:
            slow = SIM.add_fault("hang", path="/api/v1/users/slow*", seconds=0.4)
            try:
                results: list = [None] * clients
                peak = [0]
                stop = threading.Event()

                def watch() -> None:
                    while not stop.is_set():
                        peak[0] = max(peak[0], int(sidecar.metric(sc, "okta_sidecar_client_connections_open")))
                        time.sleep(0.02)

                def one(i: int) -> None:
                    try:
                        with socket.create_connection(sc.listen, timeout=30) as s:
                            s.sendall(f"GET http://{HOST}/api/v1/users/slow{i} HTTP/1.1\r\nHost: {HOST}\r\n"
                                      f"Connection: close\r\n\r\n".encode())
                            data = b""
                            while True:
                                chunk = s.recv(65536)
                                if not chunk:
                                    break
                                data += chunk
                        results[i] = data.count(b"HTTP/1.1 "), int(data.split(b" ")[1])
                    except OSError as e:
                        results[i] = (0, type(e).__name__)

                w = threading.Thread(target=watch)
                w.start()
                threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                stop.set()
                w.join()
            finally:
                SIM.clear_faults()
            # Each client got exactly one answer, and it was the upstream's.
            self.assertEqual(results, [(1, 200)] * clients)
            self.assertLessEqual(peak[0], cap)
            self.assertGreaterEqual(sidecar.metric(sc, "okta_sidecar_accept_paused_total"), 1)
            self.assertEqual(sidecar.metric(sc, "okta_sidecar_client_connections_max"), cap)
            del slow

    def test_queue_total_cap_is_held_and_every_request_answered_once(self) -> None:
        with plain_sidecar({"rate_limit": {"max_concurrency": 1, "max_queue_total": 3}}) as sc:
            SIM.add_fault("hang", path="/api/v1/users/q*", seconds=0.3)
            try:
                n = 10
                results: list = [None] * n
                barrier = threading.Barrier(n)

                def one(i: int) -> None:
                    conn = http.client.HTTPConnection(*sc.listen, timeout=30)
                    try:
                        barrier.wait(10)
                        conn.request("GET", f"http://{HOST}/api/v1/users/q{i}")
                        r = conn.getresponse()
                        r.read()
                        results[i] = (r.status, r.getheader("X-Okta-Sidecar-Error"))
                    except (OSError, http.client.HTTPException) as e:
                        results[i] = (0, type(e).__name__)
                    finally:
                        conn.close()

                threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
            finally:
                SIM.clear_faults()
            statuses = [r[0] for r in results]
            self.assertTrue(all(r in ((200, None), (429, "rate_limited")) for r in results), results)
            self.assertGreaterEqual(statuses.count(429), 1, results)
            self.assertGreaterEqual(statuses.count(200), 4, results)  # 1 in flight + 3 queued
            self.assertLessEqual(sidecar.metric(sc, "okta_sidecar_queue_depth"), 3)


class PoolExhaustion(unittest.TestCase):
    def test_pool_exhaustion_is_answered_and_not_blamed_on_the_upstream(self) -> None:
        cfg = {"upstream": {"max_connections_per_host": 1}, "client": {"request_timeout_ms": 1000},
               "circuit_breaker": {"failure_threshold": 1}}
        with plain_sidecar(cfg) as sc:
            # The first response trickles its body for ~2.5 s, holding the only connection.
            SIM.add_fault("slow_body", path="/api/v1/users/hold", size=50, chunk=1, interval=0.05)
            first_status: list = []

            def hold() -> None:
                first_status.append(sc.http_via_proxy("GET", f"http://{HOST}/api/v1/users/hold").status)

            try:
                holder = threading.Thread(target=hold)
                holder.start()
                self.assertTrue(sidecar.wait_until(
                    lambda: sidecar.metric(sc, "okta_sidecar_upstream_connections", state="active") >= 1, 5))
                start = time.monotonic()
                r = sc.http_via_proxy("GET", f"http://{HOST}/api/v1/users/next")
                took = time.monotonic() - start
                holder.join(30)
            finally:
                SIM.clear_faults()
            self.assertEqual(r.status, 503, r.body)
            self.assertEqual(r.header("X-Okta-Sidecar-Error"), "pool_exhausted")
            self.assertIsNotNone(r.header("Retry-After"))
            self.assertLess(took, 2.0, "answered at the request deadline, not when the pool freed up")
            self.assertEqual(first_status, [200])
            # Our own limit, not Okta's failure: the breaker (threshold 1) stayed closed.
            self.assertEqual(sidecar.metric(sc, "okta_sidecar_breaker_state"), 0)
            self.assertEqual(sidecar.metric(sc, "okta_sidecar_upstream_failures_total"), 0)
            self.assertEqual(sc.http_via_proxy("GET", f"http://{HOST}/api/v1/users/after").status, 200)


class SlowUploads(unittest.TestCase):
    def _slow_post(self, sc: sidecar.Sidecar, chunked: bool) -> tuple:
        start = time.monotonic()
        with socket.create_connection(sc.listen, timeout=20) as s:
            framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: 100000"
            s.sendall(f"POST http://{HOST}/api/v1/users/upload HTTP/1.1\r\nHost: {HOST}\r\n"
                      f"{framing}\r\n\r\n".encode())
            # One byte every 100 ms: the idle timer (60 s) never fires; the total deadline must.
            s.settimeout(0.1)
            data = b""
            for _ in range(100):  # at most 10 s
                try:
                    s.sendall(b"1\r\na\r\n" if chunked else b"a")
                except OSError:
                    break
                try:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    if b"\r\n\r\n" in data:
                        break
                except socket.timeout:
                    continue
            s.settimeout(5)
            try:
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
        return data, time.monotonic() - start

    def test_request_timeout_bounds_buffered_and_streamed_uploads(self) -> None:
        with plain_sidecar({"client": {"request_timeout_ms": 1500}}) as sc:
            for chunked in (False, True):
                with self.subTest(chunked=chunked):
                    data, took = self._slow_post(sc, chunked)
                    # The deadline ends the upload: the sidecar closes the connection (a body
                    # that never finished arriving has no answer), long before the idle timer.
                    self.assertEqual(data, b"", data[:200])
                    self.assertGreater(took, 1.2)
                    self.assertLess(took, 5.0)
            # Beast closes the socket at the deadline; the session counts the timeout as it
            # resumes, a moment after the client saw the close.
            self.assertTrue(sidecar.wait_until(
                lambda: sidecar.metric(sc, "okta_sidecar_timeouts_total", kind="client_body") >= 2, 5))
            # The upstream was not blamed: its breaker stays closed.
            self.assertEqual(sidecar.metric(sc, "okta_sidecar_breaker_state"), 0)


if __name__ == "__main__":
    unittest.main()
