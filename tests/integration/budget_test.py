"""Spending less of the org's budget (issue 15), end to end: real clients -> CONNECT interception
through the real okta-sidecar binary -> the Okta simulator, on loopback.

- Concurrency without a storm: two bursts of 500 requests from 100 clients against an org limit
  of 20 in flight (50 ms each), and the Okta Node SDK's own storm through the sidecar.
- Coalescing of identical concurrent GET/HEAD requests (never across credentials, never for
  other methods).
- The cache of Okta's public documents (keys, discovery): hits, max-age expiry, no-store, stale
  while Okta is down.
- The capacity ceiling per window.

Each scenario starts its own sidecar, so what one learned (an in-flight cap, a cached document)
never leaks into another. Figures are printed as "[budget figures] ..." for the closing note.

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v budget_test
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from typing import Optional

import okta_sim
import sidecar
import test_pki

metric = sidecar.metric
wait_until = sidecar.wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.normpath(os.path.join(HERE, "..", "..", "bench"))
USERS = "/api/v1/users?limit=1"
NAMES = ("storm.okta.com", "sdk.okta.com", "share.okta.com", "docs.okta.com", "capacity.okta.com")

PKI: test_pki.Pki
TMP: str


def setUpModule() -> None:
    global PKI, TMP
    TMP = tempfile.mkdtemp(prefix="budget-test-")
    PKI = test_pki.make_pki(TMP, names=(*NAMES, "127.0.0.1"))


def tearDownModule() -> None:
    shutil.rmtree(TMP, ignore_errors=True)


def start_sidecar(sim: okta_sim.OktaSimulator, host: str, config: Optional[dict] = None) -> sidecar.Sidecar:
    base = {"upstream": {"resolve": {f"{host}:443": f"127.0.0.1:{sim.port}"}},
            "retry": {"max_attempts": 1}, "circuit_breaker": {"failure_threshold": 1000}}
    return sidecar.Sidecar(sidecar.deep_merge(base, config or {}), trust_file=PKI.ca_cert,
                           hosts=()).start()


def stop(sc: sidecar.Sidecar) -> None:
    code = sc.stop()
    if code != 0:
        raise AssertionError(f"sidecar exit code {code}")


def run_clients(sc: sidecar.Sidecar, host: str, n: int, clients: int, path: str = USERS,
                headers_of=lambda i: {"Authorization": f"SSWS token-{i}"},
                timeout: float = 60.0) -> list:
    """`clients` threads, each with one kept-alive CONNECT tunnel, share `n` GETs; returns the
    statuses."""
    work: "queue.Queue" = queue.Queue()
    for i in range(n):
        work.put(i)
    statuses: list = []
    errors: list = []
    lock = threading.Lock()
    go = threading.Event()

    def worker() -> None:
        conn = sc.connection(host, timeout=timeout)
        try:
            conn.connect()
            go.wait(10)
            while True:
                try:
                    i = work.get_nowait()
                except queue.Empty:
                    return
                conn.request("GET", path, headers=headers_of(i))
                resp = conn.getresponse()
                resp.read()
                with lock:
                    statuses.append(resp.status)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # tunnels set up: the burst starts at once
    go.set()
    for t in threads:
        t.join(timeout + 10)
    if errors:
        raise AssertionError(f"client errors: {errors[:5]}")
    return statuses


def host_status(sc: sidecar.Sidecar, host: str) -> dict:
    for h in sc.admin_json("/status")["hosts"]:
        if h["host"] == host:
            return h
    return {}


class ConcurrencyStormTest(unittest.TestCase):
    """Okta's org-wide concurrency limit: 20 in flight, 50 ms per request."""

    LIMIT = 20
    LATENCY = 0.05

    def test_two_bursts_of_500_from_100_clients_cost_at_most_5_concurrency_429s(self) -> None:
        host = "storm.okta.com"
        with okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, limits={"users": 1000000},
                                    concurrency_limit=self.LIMIT, latency=self.LATENCY) as sim:
            sc = start_sidecar(sim, host)
            try:
                ideal = 500 * self.LATENCY / self.LIMIT
                per_burst = []
                times = []
                for _ in range(2):
                    before = sim.stats()["concurrency_limited"]
                    t0 = time.monotonic()
                    statuses = run_clients(sc, host, 500, 100)
                    times.append(time.monotonic() - t0)
                    self.assertEqual(statuses.count(200), 500, statuses[:20])
                    per_burst.append(sim.stats()["concurrency_limited"] - before)
                    time.sleep(0.5)
                h = host_status(sc, host)
                st = sim.stats()
                print(f"\n[budget figures] two bursts of 500 from 100 clients, org limit {self.LIMIT} "
                      f"in flight: upstream concurrency 429s {per_burst} (total {sum(per_burst)}), "
                      f"burst times {[round(t, 2) for t in times]} s (ideal {ideal:.2f} s), "
                      f"simulator max in flight {st['max_inflight']}, cap now {h.get('cap')} "
                      f"({h.get('cap_source')}, refused at {h.get('refused_at')})", flush=True)
                self.assertLessEqual(sum(per_burst), 5)
                self.assertLessEqual(per_burst[1], 1)  # the second burst does not rediscover it
                self.assertLessEqual(h["cap"], self.LIMIT)
                self.assertIn(h["cap_source"], ("grown", "backed_off", "reprobed"))
            finally:
                stop(sc)
            # Within 2x the ideal time (a generous margin for a shared 2-core machine running
            # 100 Python client threads and a Python simulator; the figure is printed above).
            for t in times:
                self.assertLess(t, max(2 * ideal, ideal + 2.5))


def node_sdk_ready() -> Optional[str]:
    """The Okta Node SDK from bench/node_modules, installed with npm (bench/package-lock.json)
    when missing; None (with the reason) when node/npm or the registry is unavailable."""
    if not shutil.which("node"):
        return "node is not installed"
    sdk = os.path.join(BENCH, "node_modules", "@okta", "okta-sdk-nodejs")
    if not os.path.isdir(sdk):
        if not shutil.which("npm"):
            return "npm is not installed"
        try:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True,
                           timeout=300, capture_output=True)
        except (subprocess.SubprocessError, OSError) as e:
            return f"npm ci failed: {e}"
    return None if os.path.isdir(sdk) else "bench/node_modules/@okta/okta-sdk-nodejs missing"


class NodeSdkStormTest(unittest.TestCase):
    """The official Okta Node SDK (bench/clients/okta_sdk_client.js: K workers, its own 429
    retry) through the sidecar against an org limit of 20 in flight."""

    def test_node_sdk_storm_through_the_sidecar(self) -> None:
        why = node_sdk_ready()
        if why:
            self.skipTest(why)
        host = "sdk.okta.com"
        n, k, limit, latency = 500, 100, 20, 0.05
        with okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, limits={"users": 1000000},
                                    concurrency_limit=limit, latency=latency) as sim:
            # The SDK sends the very same GET each time: without coalescing off, most of the
            # storm would be answered by sharing and the in-flight cap would not be tested.
            sc = start_sidecar(sim, host, {"rate_limit": {"coalesce": False}})
            try:
                # The sidecar's own CA signs what the SDK sees; no inherited proxy settings.
                env = {key: v for key, v in os.environ.items() if "proxy" not in key.lower()}
                env.update(ORG_URL=f"https://{host}", N=str(n), K=str(k),
                           HTTPS_PROXY=f"http://{sc.listen[0]}:{sc.listen[1]}",
                           NODE_EXTRA_CA_CERTS=sc.ready_record["ca_cert"])
                t0 = time.monotonic()
                out = subprocess.run(["node", os.path.join(BENCH, "clients", "okta_sdk_client.js")],
                                     env=env, cwd=BENCH, capture_output=True, timeout=120, check=False)
                elapsed = time.monotonic() - t0
                self.assertEqual(out.returncode, 0, out.stderr.decode()[-2000:])
                res = json.loads(out.stdout.decode().strip().splitlines()[-1])
                st = sim.stats()
                h = host_status(sc, host)
                ideal = n * latency / limit
                print(f"\n[budget figures] Okta Node SDK storm ({n} GETs, {k} workers) through the "
                      f"sidecar, org limit {limit}: upstream concurrency 429s "
                      f"{st['concurrency_limited']}, SDK completion {res['completion_s']:.2f} s "
                      f"(ideal {ideal:.2f} s), client-seen 429s {res['client_429']}, "
                      f"ok {res['ok']}, cap {h.get('cap')} ({h.get('cap_source')})", flush=True)
                self.assertEqual(res["ok"], n, res)
                self.assertEqual(res["client_429"], 0)
                self.assertLessEqual(st["concurrency_limited"], 5)
                self.assertLess(res["completion_s"], max(2 * ideal, ideal + 2.5), elapsed)
            finally:
                stop(sc)


def fetch(sc: sidecar.Sidecar, host: str, method: str, path: str,
          headers: Optional[dict] = None) -> sidecar.Response:
    return sc.https_via_proxy(method, f"https://{host}{path}", headers=headers)


def in_parallel(n: int, call) -> list:
    """Runs call(i) for i in range(n) in threads started together; returns the results."""
    out: list = [None] * n
    errors: list = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            out[i] = call(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise AssertionError(errors[:3])
    return out


class CoalescingTest(unittest.TestCase):
    """Identical concurrent reads share one upstream request (Okta answers in 300 ms)."""

    HOST = "share.okta.com"

    @classmethod
    def setUpClass(cls) -> None:
        cls.sim = okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, limits={"users": 100000},
                                         latency=0.3).start()
        cls.sc = start_sidecar(cls.sim, cls.HOST)

    @classmethod
    def tearDownClass(cls) -> None:
        stop(cls.sc)
        cls.sim.stop()

    def upstream_requests(self, fn) -> tuple:
        before = self.sim.stats()["requests"]
        out = fn()
        return out, self.sim.stats()["requests"] - before

    def test_forty_identical_concurrent_gets_cost_one_upstream_request(self) -> None:
        before = metric(self.sc, "okta_sidecar_coalesced_total")
        path = "/api/v1/users?limit=2&q=same"
        rs, upstream = self.upstream_requests(lambda: in_parallel(40, lambda i: fetch(
            self.sc, self.HOST, "GET", path, {"Authorization": "SSWS one-token"})))
        self.assertEqual({r.status for r in rs}, {200})
        self.assertEqual(len({r.body for r in rs}), 1)  # the very same response for all
        coalesced = metric(self.sc, "okta_sidecar_coalesced_total") - before
        print(f"\n[budget figures] 40 identical concurrent GETs: {upstream} upstream request(s), "
              f"{coalesced:.0f} coalesced", flush=True)
        self.assertLessEqual(upstream, 2)
        self.assertGreaterEqual(coalesced, 38)
        self.assertGreaterEqual(self.sc.admin_json("/status")["coalesced"], 38)
        shared = [r for r in rs if r.header("X-Okta-Sidecar-Cache") == "coalesced"]
        self.assertGreaterEqual(len(shared), 38)

    def test_never_across_credentials(self) -> None:
        rs, upstream = self.upstream_requests(lambda: in_parallel(10, lambda i: fetch(
            self.sc, self.HOST, "GET", "/api/v1/users?limit=1&q=creds",
            {"Authorization": f"SSWS token-{i}"})))
        self.assertEqual({r.status for r in rs}, {200})
        self.assertEqual(upstream, 10)

    def test_never_across_cookies_of_one_token(self) -> None:
        # A browser-style client: one token, a session cookie each. The cookie is part of the
        # credential (an API client without cookies has its digest taken once per connection).
        rs, upstream = self.upstream_requests(lambda: in_parallel(10, lambda i: fetch(
            self.sc, self.HOST, "GET", "/api/v1/users?limit=1&q=cookies",
            {"Authorization": "SSWS one-token", "Cookie": f"sid=session-{i}"})))
        self.assertEqual({r.status for r in rs}, {200})
        self.assertEqual(upstream, 10)

    def test_never_for_other_methods(self) -> None:
        rs, upstream = self.upstream_requests(lambda: in_parallel(10, lambda i: fetch(
            self.sc, self.HOST, "POST", "/api/v1/users", {"Authorization": "SSWS one-token",
                                                          "Content-Type": "application/json"})))
        self.assertEqual({r.status for r in rs}, {200})
        self.assertEqual(upstream, 10)

    def test_different_content_negotiation_is_not_shared(self) -> None:
        rs, upstream = self.upstream_requests(lambda: in_parallel(4, lambda i: fetch(
            self.sc, self.HOST, "GET", "/api/v1/users?limit=1&q=neg",
            {"Authorization": "SSWS one-token", "Accept-Language": ["en", "fr", "de", "it"][i]})))
        self.assertEqual({r.status for r in rs}, {200})
        self.assertEqual(upstream, 4)


class DocumentCacheTest(unittest.TestCase):
    """Signing keys and discovery documents from the cache, per Okta's Cache-Control."""

    HOST = "docs.okta.com"

    def setUp(self) -> None:
        self.sim = okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key).start()
        self.sc = start_sidecar(self.sim, self.HOST)

    def tearDown(self) -> None:
        stop(self.sc)
        self.sim.stop()

    def test_keys_and_discovery_are_served_from_the_cache_with_age(self) -> None:
        self.sim.document_cache_control = "max-age=3600, must-revalidate"
        for path in ("/oauth2/default/v1/keys", "/oauth2/v1/keys", "/.well-known/openid-configuration",
                     "/oauth2/default/.well-known/oauth-authorization-server"):
            before = self.sim.stats()["requests"]
            first = fetch(self.sc, self.HOST, "GET", path)
            time.sleep(1.1)
            second = fetch(self.sc, self.HOST, "GET", path)
            head = fetch(self.sc, self.HOST, "HEAD", path)
            self.assertEqual((first.status, second.status, head.status), (200, 200, 200), path)
            self.assertEqual(self.sim.stats()["requests"] - before, 1, path)
            self.assertEqual(second.body, first.body)
            self.assertEqual(second.header("X-Okta-Sidecar-Cache"), "hit")
            self.assertGreaterEqual(int(second.header("Age")), 1)
            self.assertEqual(second.header("Cache-Control"), "max-age=3600, must-revalidate")
            self.assertEqual(head.body, b"")
            self.assertEqual(int(head.header("Content-Length")), len(first.body))
        st = self.sc.admin_json("/status")["cache"]
        self.assertGreaterEqual(st["hits"], 8)
        self.assertEqual(st["entries"], 4)
        self.assertGreaterEqual(metric(self.sc, "okta_sidecar_cache_responses_total", result="hit"), 8)

    def test_nothing_else_is_cached(self) -> None:
        before = self.sim.stats()["requests"]
        for _ in range(2):
            self.assertEqual(fetch(self.sc, self.HOST, "GET", "/api/v1/users?limit=1",
                                   {"Authorization": "SSWS t"}).status, 200)
        self.assertEqual(self.sim.stats()["requests"] - before, 2)

    def test_max_age_expiry_goes_back_to_okta(self) -> None:
        self.sim.document_cache_control = "max-age=1, must-revalidate"
        before = self.sim.stats()["requests"]
        fetch(self.sc, self.HOST, "GET", "/oauth2/default/v1/keys")
        fetch(self.sc, self.HOST, "GET", "/oauth2/default/v1/keys")
        self.assertEqual(self.sim.stats()["requests"] - before, 1)
        time.sleep(1.2)
        r = fetch(self.sc, self.HOST, "GET", "/oauth2/default/v1/keys")
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("X-Okta-Sidecar-Cache"))
        self.assertEqual(self.sim.stats()["requests"] - before, 2)

    def test_no_store_is_never_cached(self) -> None:
        self.sim.document_cache_control = "no-store"
        before = self.sim.stats()["requests"]
        for _ in range(3):
            self.assertEqual(fetch(self.sc, self.HOST, "GET", "/oauth2/default/v1/keys").status, 200)
        self.assertEqual(self.sim.stats()["requests"] - before, 3)
        self.assertEqual(self.sc.admin_json("/status")["cache"]["entries"], 0)

    def test_stale_keys_are_served_while_okta_is_down(self) -> None:
        self.sim.document_cache_control = "max-age=1, must-revalidate"
        first = fetch(self.sc, self.HOST, "GET", "/oauth2/default/v1/keys")
        self.assertEqual(first.status, 200)
        time.sleep(1.2)
        # Okta errs: 503 for every request; the verifier still gets the keys, marked stale.
        self.sim.add_fault("status", path="/oauth2/*", status=503)
        r = fetch(self.sc, self.HOST, "GET", "/oauth2/default/v1/keys")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, first.body)
        self.assertEqual(r.header("X-Okta-Sidecar-Cache"), "stale")
        self.assertGreaterEqual(int(r.header("Age")), 1)
        # A document never fetched has nothing to fall back on: Okta's error passes through.
        self.assertEqual(fetch(self.sc, self.HOST, "GET", "/oauth2/other/v1/keys").status, 503)
        # Okta unreachable (connection reset): still the stale keys.
        self.sim.clear_faults()
        self.sim.add_fault("reset", path="/oauth2/*")
        r = fetch(self.sc, self.HOST, "GET", "/oauth2/default/v1/keys")
        self.assertEqual((r.status, r.header("X-Okta-Sidecar-Cache")), (200, "stale"))
        self.assertGreaterEqual(self.sc.admin_json("/status")["cache"]["stale_served"], 2)


    def test_stale_keys_are_served_while_the_breaker_is_open(self) -> None:
        sc = start_sidecar(self.sim, self.HOST, {"circuit_breaker": {"failure_threshold": 1,
                                                                     "open_ms": 30000}})
        try:
            self.sim.document_cache_control = "max-age=1, must-revalidate"
            first = fetch(sc, self.HOST, "GET", "/oauth2/default/v1/keys")
            time.sleep(1.2)
            self.sim.add_fault("status", path="/oauth2/*", status=503)
            fetch(sc, self.HOST, "GET", "/oauth2/default/v1/keys")  # opens the breaker
            before = self.sim.stats()["requests"]
            r = fetch(sc, self.HOST, "GET", "/oauth2/default/v1/keys")
            self.assertEqual((r.status, r.header("X-Okta-Sidecar-Cache")), (200, "stale"))
            self.assertEqual(r.body, first.body)
            self.assertEqual(self.sim.stats()["requests"], before, "the open breaker sent nothing")
            self.assertGreaterEqual(metric(sc, "okta_sidecar_breaker_rejections_total", host=self.HOST), 1)
        finally:
            stop(sc)

class CapacityTest(unittest.TestCase):
    """rate_limit.capacity_percent: 50% of a 20-per-window bucket, 2 s windows."""

    def test_capacity_percent_caps_each_window(self) -> None:
        host = "capacity.okta.com"
        with okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, limits={"users": 20},
                                    window_seconds=2.0) as sim:
            sc = start_sidecar(sim, host, {"rate_limit": {"capacity_percent": 50}})
            try:
                statuses = run_clients(sc, host, 30, 5)
                self.assertEqual(statuses.count(200), 30)
                wins = [w for w in sim.windows("users") if w["processed"] or w["rejected"]]
                used = [w["processed"] for w in wins]
                b = [x for x in sc.admin_json("/status")["buckets"] if x["host"] == host]
                print(f"\n[budget figures] capacity_percent 50 on a bucket of 20 per window: "
                      f"per-window use {used}, upstream 429s {sum(w['rejected'] for w in wins)}",
                      flush=True)
                self.assertTrue(all(u <= 10 for u in used), used)
                self.assertEqual(sum(used), 30)
                self.assertEqual(b[0]["capacity_percent"], 50)
                self.assertEqual(sc.admin_json("/status")["capacity_percent"], 50)
            finally:
                stop(sc)


if __name__ == "__main__":
    unittest.main()
