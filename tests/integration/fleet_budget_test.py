"""No stranded fleet budget (issue 15): three real okta-sidecar processes share one simulated
Okta bucket of 120 per window through a real redis-server, and a finite batch of 480 requests
(uneven: 80, 160 and 240 through the three sidecars). A sidecar whose clients are done hands its
unused leased tokens back, so every window, the last one included, is spent while requests wait
anywhere in the fleet: 4 windows of >= 95% each, not 120, 120, 120, 110, 10.

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v fleet_budget_test
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
import unittest
import uuid

import fleet_test
import okta_sim
import sidecar
import test_pki

HOST = "acme.okta.com"
WINDOW_S = 3.0
LIMIT = 120
SHARES = (80, 160, 240)  # requests through each of the three sidecars
CLIENTS_PER_SIDECAR = 8

PKI: test_pki.Pki
TMP: str


def setUpModule() -> None:
    global PKI, TMP
    TMP = tempfile.mkdtemp(prefix="fleet-budget-test-")
    PKI = test_pki.make_pki(TMP, names=(HOST, "127.0.0.1"))


def tearDownModule() -> None:
    shutil.rmtree(TMP, ignore_errors=True)


def drive(sc: sidecar.Sidecar, n: int, statuses: list, lock: threading.Lock,
          clients: int = CLIENTS_PER_SIDECAR) -> list:
    work: "queue.Queue" = queue.Queue()
    for i in range(n):
        work.put(i)

    def worker() -> None:
        conn = sc.connection(HOST, timeout=60)
        try:
            while True:
                try:
                    work.get_nowait()
                except queue.Empty:
                    return
                conn.request("GET", "/api/v1/users?limit=1", headers={"Authorization": "SSWS batch"})
                resp = conn.getresponse()
                resp.read()
                with lock:
                    statuses.append(resp.status)
        except Exception as e:  # noqa: BLE001 - counted as a client error
            with lock:
                statuses.append(repr(e))
        finally:
            conn.close()

    return [threading.Thread(target=worker, daemon=True) for _ in range(min(clients, n))]


class FleetLastWindowTest(unittest.TestCase):
    def test_480_requests_on_120_per_window_take_4_full_windows(self) -> None:
        redis = fleet_test.RedisServer(TMP).start()
        self.addCleanup(redis.stop)
        with okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, window_seconds=WINDOW_S,
                                    limits={"users": LIMIT}) as sim:
            fleet = {"redis": redis.url, "key_prefix": f"fleet-budget-{uuid.uuid4().hex[:8]}:",
                     "lease_size": 5, "timeout_ms": fleet_test.REDIS_TIMEOUT_MS, "expected_replicas": 3}
            scs = []
            for _ in SHARES:
                # Every request is the same GET with one credential: coalescing off, so each
                # one costs the bucket (what this scenario measures).
                cfg = {"threads": 2, "fleet": fleet, "retry": {"max_attempts": 1},
                       "circuit_breaker": {"failure_threshold": 1000},
                       "rate_limit": {"coalesce": False}}
                sc = sidecar.Sidecar(cfg, upstream_port=sim.port, trust_file=PKI.ca_cert).start()
                self.addCleanup(sc.stop)
                scs.append(sc)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not all(
                    sc.admin_json("/status")["fleet"]["mode"] == "shared" for sc in scs):
                time.sleep(0.05)
            statuses: list = []
            lock = threading.Lock()
            threads = [t for sc, n in zip(scs, SHARES) for t in drive(sc, n, statuses, lock)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(90)
            elapsed = time.monotonic() - t0
            wins = [w for w in sim.windows("users") if w["processed"] or w["rejected"]]
            used = [w["processed"] for w in wins]
            returned = sum(sc.admin_json("/status")["fleet"]["tokens_returned"] for sc in scs)
            left = fleet_test.fallbacks(scs)
            print(f"\n[budget figures] fleet of 3 (80/160/240 requests), bucket {LIMIT} per "
                  f"{WINDOW_S:.0f} s window: per-window use {used}, upstream 429s "
                  f"{sum(w['rejected'] for w in wins)}, {elapsed:.1f} s, tokens handed back "
                  f"{returned}, fallbacks {left}", flush=True)
            self.assertEqual(statuses.count(200), sum(SHARES), [s for s in statuses if s != 200][:5])
            self.assertEqual(left, [(0, "none")] * len(scs), "a sidecar left shared mode")
            self.assertEqual(len(used), 4, used)
            for u in used:
                self.assertGreaterEqual(u, 0.95 * LIMIT, used)


class FleetConcurrencyTest(unittest.TestCase):
    """What one sidecar's concurrency 429 taught it, the fleet knows: a second sidecar's burst
    does not rediscover Okta's in-flight limit (20, 50 ms per request)."""

    def test_a_back_off_learned_by_one_sidecar_spares_the_other_one_its_429(self) -> None:
        redis = fleet_test.RedisServer(TMP).start()
        self.addCleanup(redis.stop)
        with okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, limits={"users": 1000000},
                                    concurrency_limit=20, latency=0.05) as sim:
            fleet = {"redis": redis.url, "key_prefix": f"fleet-conc-{uuid.uuid4().hex[:8]}:",
                     "lease_size": 5, "timeout_ms": fleet_test.REDIS_TIMEOUT_MS, "expected_replicas": 2}
            cfg = {"threads": 2, "fleet": fleet, "retry": {"max_attempts": 1},
                   "circuit_breaker": {"failure_threshold": 1000}, "rate_limit": {"coalesce": False}}
            a, b = (sidecar.Sidecar(cfg, upstream_port=sim.port, trust_file=PKI.ca_cert).start()
                    for _ in range(2))
            self.addCleanup(a.stop)
            self.addCleanup(b.stop)
            statuses: list = []
            lock = threading.Lock()

            def burst(sc: sidecar.Sidecar, n: int) -> int:
                before = sim.stats()["concurrency_limited"]
                ts = drive(sc, n, statuses, lock, clients=60)
                for t in ts:
                    t.start()
                for t in ts:
                    t.join(60)
                return sim.stats()["concurrency_limited"] - before

            def host_of(sc: sidecar.Sidecar) -> dict:
                return next((h for h in sc.admin_json("/status")["hosts"] if h["host"] == HOST), {})

            burst(b, 1)  # b knows the host (its heartbeat names it)
            first = burst(a, 400)
            learned = host_of(a)
            # The lesson reaches b with its next heartbeat (every 100 ms) and is adopted at b's
            # next scheduling event: one request at a time until b shows it. A's burst may have
            # met several 429s of one overshoot, each at a lower level, each shared in turn: b may
            # see an earlier one first.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and host_of(b).get("refused_at") != learned.get("refused_at"):
                burst(b, 1)
                time.sleep(0.05)
            told = host_of(b)
            second = burst(b, 400)
            print(f"\n[budget figures] fleet concurrency: sidecar A's burst {first} concurrency 429(s), "
                  f"learned {learned}; sidecar B told {told}; B's burst {second} concurrency 429(s)",
                  flush=True)
            self.assertEqual(statuses.count(200), len(statuses), [s for s in statuses if s != 200][:5])
            if learned.get("refused_at") is not None:
                self.assertEqual(told.get("cap_source"), "shared")
                self.assertEqual(told.get("refused_at"), learned["refused_at"])
                self.assertEqual(second, 0)
            self.assertLessEqual(first + second, 5)


if __name__ == "__main__":
    unittest.main()
