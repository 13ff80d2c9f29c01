"""Fleet mode (issue 9) end to end: a real redis-server and three real okta-sidecar processes
share one simulated Okta bucket, each sidecar driven by its own clients.

- with Redis: zero client-visible 429s, <= 0.5% upstream 429s, >= 95% of each window used;
- the same three sidecars without Redis race for the same budget (the figures are printed);
- Redis killed mid-batch: no client errors, bounded upstream 429s, every sidecar back in
  shared mode after Redis restarts.

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v fleet_test
"""

from __future__ import annotations

import collections
import json
import os
import re
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
import uuid

import okta_sim
import sidecar
import test_pki
from tools import free_port

HOST = "acme.okta.com"
WINDOW_S = 3.0
LIMIT = 90                # per window: 30 requests per second for the whole fleet
SIDECARS = 3
CLIENTS_PER_SIDECAR = 8
BATCH_WINDOWS = 4
SANITIZED = bool(os.environ.get("OKTA_SIDECAR_SANITIZED"))
# One Redis reply slower than fleet.timeout_ms sends a sidecar to local mode (by design), and
# local mode spends only its share of each window. Under TSan, with other suites on the same 2
# cores, 50 ms replies were missed (all three sidecars fell back in 1 of 3 loaded runs of
# fleet_budget_test), so the sanitized runs give Redis ten times longer.
REDIS_TIMEOUT_MS = 500 if SANITIZED else 50


def fallbacks(sidecars: list) -> list:
    """Each sidecar's switches to local mode and why: the shared-mode figures assume none."""
    return [(f["fallbacks"], f["fallback_reason"]) for f in
            (sc.admin_json("/status")["fleet"] for sc in sidecars)]

PKI: test_pki.Pki
TMP: str
SIM: okta_sim.OktaSimulator



class RedisServer:
    """redis-server on loopback, its own port and directory, no persistence; killed by PID."""

    def __init__(self, directory: str, port: int | None = None, tls: bool = False,
                 password: str | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.tls = tls
        self.password = password
        self.proc: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if not exe:
            raise unittest.SkipTest("redis-server not installed (scripts/deps.sh TEST_PACKAGES)")
        args = [exe, "--bind", "127.0.0.1", "--dir", self.directory, "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", PKI.server_cert,
                     "--tls-key-file", PKI.server_key, "--tls-ca-cert-file", PKI.ca_cert,
                     "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        log_path = os.path.join(self.directory, f"redis-{self.port}.log")

        def launch() -> subprocess.Popen:
            with open(log_path, "ab") as log:  # the child keeps its own descriptor
                return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        self.proc = launch()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                # It exited: on a restart at the same port, most likely the port is not free yet
                # (a socket of the killed server's still closing). Try again within the deadline.
                time.sleep(0.2)
                self.proc = launch()
                continue
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                    s = raw
                    if self.tls:
                        s = ssl.create_default_context(cafile=PKI.ca_cert).wrap_socket(
                            raw, server_hostname="127.0.0.1")
                    try:
                        s.sendall(b"PING\r\n")
                        if s.recv(64)[:1] in (b"+", b"-"):  # -NOAUTH counts: it is listening
                            return self
                    finally:
                        s.close()
            except OSError:
                time.sleep(0.02)
        self.stop()
        with open(log_path, "rb") as f:
            tail = f.read()[-600:].decode(errors="replace")
        raise RuntimeError(f"redis-server did not answer on port {self.port}; its log ends: {tail}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f"default:{self.password}@" if self.password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/1"


def ledger_script(name: str) -> str:
    """The Lua text embedded in src/fleet/ledger_scripts.cpp (`const ... name = R"lua(...)lua"`)."""
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src", "fleet", "ledger_scripts.cpp")
    with open(src, encoding="utf-8") as f:
        m = re.search(name + r' = R"lua\((.*?)\)lua"', f.read(), re.S)
    assert m, f"{name} not found in {src}"
    return m.group(1)


class Resp:
    """A minimal RESP2 client for checking the ledger scripts directly."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise RuntimeError(f"bad reply {line!r}")

    def call(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._reply()


def setUpModule() -> None:
    global PKI, TMP, SIM
    TMP = tempfile.mkdtemp(prefix="fleet-test-")
    PKI = test_pki.make_pki(TMP, names=(HOST, "127.0.0.1"))
    SIM = okta_sim.OktaSimulator(PKI.server_cert, PKI.server_key, window_seconds=WINDOW_S,
                                 limits={"users": LIMIT}).start()


def tearDownModule() -> None:
    SIM.stop()
    shutil.rmtree(TMP, ignore_errors=True)


class Batch:
    """Every sidecar's clients send GET /api/v1/users back to back until stopped."""

    def __init__(self, sidecars: list) -> None:
        self.sidecars = sidecars
        self.stop_ = threading.Event()
        self.lock = threading.Lock()
        self.statuses: dict = {}
        self.errors: list = []
        self.threads = [threading.Thread(target=self._client, args=(sc,), daemon=True)
                        for sc in sidecars for _ in range(CLIENTS_PER_SIDECAR)]

    def _client(self, sc: sidecar.Sidecar) -> None:
        conn = None
        while not self.stop_.is_set():
            try:
                if conn is None:
                    conn = sc.connection(HOST, timeout=30)
                r = sidecar.request(conn, "GET", "/api/v1/users?limit=1")
                with self.lock:
                    self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                if r.header("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is a client-visible error
                with self.lock:
                    self.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def start(self) -> "Batch":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_.set()
        for t in self.threads:
            t.join(40)


def bucket_figures(since: float) -> dict:
    """Upstream totals and per-window use of the users bucket for windows opened after `since`."""
    wins = [w for w in SIM.windows("users") if w["start"] >= since]
    full = [w for w in wins[:-1]] if len(wins) > 1 else []  # the last one is cut by the stop
    rejected = sum(w["rejected"] for w in wins)
    processed = sum(w["processed"] for w in wins)
    used = sum(w["processed"] for w in full)
    return {
        "windows": len(full),
        "processed": processed,
        "upstream_429": rejected,
        "upstream_429_pct": 100.0 * rejected / max(1, processed + rejected),
        "utilisation_pct": 100.0 * used / max(1, LIMIT * len(full)),
        "per_window_used": [w["processed"] for w in full],
    }


class FleetTest(unittest.TestCase):
    def start_sidecars(self, fleet: dict | None, count: int = SIDECARS, env: dict | None = None) -> list:
        out = []
        for _ in range(count):
            cfg = {"threads": 2, "fleet": fleet,
                   "retry": {"max_attempts": 1}, "circuit_breaker": {"failure_threshold": 1000}}
            sc = sidecar.Sidecar(cfg, upstream_port=SIM.port, trust_file=PKI.ca_cert, env=env).start()
            self.addCleanup(self.stop_cleanly, sc)
            out.append(sc)
        return out

    def stop_cleanly(self, sc: sidecar.Sidecar) -> None:
        """A sidecar that died early (a crash, a sanitizer report) or did not drain fails the test."""
        code = sc.stop()
        if code != 0:
            self.fail(f"okta-sidecar {sc.listen} exited with {code}; last log lines:\n" + "\n".join(sc.logs()[-60:]))

    def fleet_config(self, redis: RedisServer) -> dict:
        return {"redis": redis.url, "key_prefix": f"fleet-test-{uuid.uuid4().hex[:8]}:",
                "lease_size": 5, "timeout_ms": REDIS_TIMEOUT_MS, "expected_replicas": SIDECARS}

    def wait_mode(self, sidecars: list, mode: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(sc.admin_json("/status")["fleet"]["mode"] == mode for sc in sidecars):
                return
            time.sleep(0.05)
        self.fail(f"not every sidecar reached fleet mode {mode!r}: "
                  + json.dumps([sc.admin_json("/status")["fleet"] for sc in sidecars]))

    def run_batch(self, sidecars: list, seconds: float, during=None) -> tuple:
        time.sleep(WINDOW_S)  # let the previous test's window run out
        since = SIM.now()
        batch = Batch(sidecars).start()
        try:
            if during:
                during()
            else:
                time.sleep(seconds)
        finally:
            batch.stop()
        return batch, bucket_figures(since)

    def assert_no_client_errors(self, batch: Batch) -> None:
        """Every request got a response; on failure, say which errors and what each sidecar logged."""
        if not batch.errors:
            return
        lines = [f"{len(batch.errors)} client errors: {collections.Counter(batch.errors).most_common(5)}"]
        for sc in batch.sidecars:
            recs = sc.log_records()
            notable = collections.Counter((r.get("level"), r.get("msg"), r.get("sidecar_error"), r.get("status"))
                                          for r in recs)
            lines.append(f"sidecar {sc.listen}: {notable.most_common(12)}")
        self.fail("\n".join(lines))

    def report(self, name: str, batch: Batch, fig: dict) -> None:
        print(f"\n[fleet figures] {name}: clients {dict(sorted(batch.statuses.items()))} "
              f"errors {len(batch.errors)}; upstream {json.dumps(fig)}", file=sys.stderr)

    def test_three_sidecars_share_one_bucket_through_redis(self) -> None:
        redis = RedisServer(TMP).start()
        self.addCleanup(redis.stop)
        scs = self.start_sidecars(self.fleet_config(redis))
        self.wait_mode(scs, "shared", 10)
        batch, fig = self.run_batch(scs, WINDOW_S * BATCH_WINDOWS + 1.5)
        self.report("with redis", batch, fig)
        self.assert_no_client_errors(batch)
        self.assertEqual(set(batch.statuses), {200}, "no client-visible 429 or other error")
        self.assertGreaterEqual(fig["windows"], BATCH_WINDOWS - 1)
        self.assertEqual(fallbacks(scs), [(0, "none")] * SIDECARS, "a sidecar left shared mode")
        self.assertLessEqual(fig["upstream_429_pct"], 0.5)
        self.assertGreaterEqual(fig["utilisation_pct"], 95.0)
        for sc in scs:
            f = sc.admin_json("/status")["fleet"]
            self.assertEqual(f["mode"], "shared")
            self.assertEqual(f["replicas_seen"], SIDECARS)
            self.assertGreater(f["lease_hits"], 0)
            metrics = sc.get_admin("/metrics").body.decode()
            for name in ("okta_sidecar_fleet_lease_hits_total", "okta_sidecar_fleet_redis_latency_seconds_bucket",
                         "okta_sidecar_fleet_fallbacks_total", "okta_sidecar_fleet_replicas_seen 3"):
                self.assertIn(name, metrics)

    def test_without_redis_the_sidecars_race(self) -> None:
        scs = self.start_sidecars(None)
        batch, fig = self.run_batch(scs, WINDOW_S * BATCH_WINDOWS + 1.5)
        self.report("without redis", batch, fig)
        for sc in scs:
            self.assertIsNone(sc.admin_json("/status")["fleet"])
        # The race this issue is about: each sidecar believes the whole Remaining is its own.
        self.assertGreater(fig["upstream_429"], 0)

    def test_redis_killed_mid_batch_degrades_then_rejoins(self) -> None:
        redis = RedisServer(TMP).start()
        self.addCleanup(redis.stop)
        scs = self.start_sidecars(self.fleet_config(redis))
        self.wait_mode(scs, "shared", 10)
        timeline = {}

        def chaos() -> None:
            time.sleep(WINDOW_S * 1.3)
            redis.stop(signal.SIGKILL)
            timeline["killed"] = time.monotonic()
            self.wait_mode(scs, "local", 5)
            time.sleep(WINDOW_S * 1.5)
            redis.start()  # same port, empty: the ledger starts over from the sidecars' reports
            t0 = time.monotonic()
            self.wait_mode(scs, "shared", 10)
            timeline["rejoin_s"] = round(time.monotonic() - t0, 3)
            time.sleep(WINDOW_S * 1.5)

        batch, fig = self.run_batch(scs, 0, during=chaos)
        fig["rejoin_s"] = timeline.get("rejoin_s")
        self.report("redis killed mid-batch", batch, fig)
        self.assert_no_client_errors(batch)
        self.assertEqual(set(batch.statuses), {200}, "no request fails because Redis failed")
        self.assertLessEqual(fig["upstream_429_pct"], 5.0)
        for sc in scs:
            f = sc.admin_json("/status")["fleet"]
            self.assertGreaterEqual(f["fallbacks"], 1)
            self.assertGreaterEqual(f["rejoins"], 2)
            self.assertGreater(f["local_admissions"], 0)
            self.assertIn("okta_sidecar_fleet_fallbacks_total", sc.get_admin("/metrics").body.decode())

    def test_ledger_scripts_merge_like_one_sidecar(self) -> None:
        redis = RedisServer(TMP).start()
        self.addCleanup(redis.stop)
        r = Resp(redis.port)
        self.addCleanup(r.close)
        lease = r.call("SCRIPT", "LOAD", ledger_script("lease_script"))
        beat = r.call("SCRIPT", "LOAD", ledger_script("heartbeat_script"))
        key = "t:bucket:acme.okta.com:users"

        def ask(want, obs=None):
            o = obs or (0, 0, 0, 0, 0)
            return r.call("EVALSHA", lease, 1, key, want, 1 if obs else 0, *o, 60000, 1000)

        # reply: granted, probe, limit, left, reset, reset_in_ms, retry_in_ms
        g = ask(5)
        self.assertEqual(g[:3], [1, 1, -1], "an unknown window: one probe, fleet-wide")
        g = ask(5)
        self.assertEqual(g[:2], [0, 0])
        self.assertTrue(0 < g[6] <= 20, g)
        g = ask(5, (100, 99, 1000, 30000, 0))  # the probe's answer opens the window
        self.assertEqual(g[:5], [5, 0, 100, 94, 1000])
        self.assertTrue(29900 <= g[5] <= 30000, g)
        self.assertEqual(ask(0, (100, 50, 1000, 30000, 0))[3], 50, "more use seen: Remaining wins")
        self.assertEqual(ask(0, (100, 70, 1000, 30000, 0))[3], 50, "same window keeps the minimum")
        self.assertEqual(ask(0, (100, 100, 940, 30000, 0))[3], 50, "a window older: stale, ignored")
        self.assertEqual(ask(100)[0], 50, "a lease never exceeds what is left")
        g = ask(1)
        self.assertEqual(g[0], 0)
        self.assertTrue(29000 < g[6] <= 30000, "spent: ask again when the window ends")
        g = ask(0, (100, 10, 1000, 30000, 1))  # a 429 with budget left: that part is not ours
        g = ask(0, (100, 100, 1060, 50, 0))  # a newer window wins
        self.assertEqual(g[2:5], [100, 90, 1060])
        time.sleep(0.08)
        self.assertEqual(ask(5)[:2], [1, 1], "the window ended: the next one opens with a probe")

        # Heartbeats: each other live sidecar reserves max(in flight, cap / members); after the
        # reservations, each host's latest concurrency back-off (cap, refused, version).
        def hb(who, inflight, ttl=150, learned=(0, 0)):
            return r.call("EVALSHA", beat, 3, "t:members", "t:inflight:acme.okta.com",
                          "t:concurrency:acme.okta.com", who, ttl, 10, inflight, *learned)

        self.assertEqual(hb("a", 4), [1, 0, 0, 0, 0])
        self.assertEqual(hb("b", 1), [2, 5, 0, 0, 0])
        self.assertEqual(hb("a", 7, learned=(14, 19)), [2, 5, 14, 19, 1], "a's lesson is the fleet's")
        self.assertEqual(hb("b", 1), [2, 7, 14, 19, 1])
        time.sleep(0.2)
        self.assertEqual(hb("b", 1), [1, 0, 14, 19, 1], "a died: its contribution expired, its lesson stays")

    def test_redis_down_at_start_serves_locally_then_joins(self) -> None:
        redis = RedisServer(TMP)  # not started yet: its port is closed
        self.addCleanup(redis.stop)
        (sc,) = self.start_sidecars(self.fleet_config(redis), count=1)
        conn = sc.connection(HOST)
        for _ in range(3):
            self.assertEqual(sidecar.request(conn, "GET", "/api/v1/apps").status, 200)
        conn.close()
        f = sc.admin_json("/status")["fleet"]
        self.assertEqual((f["mode"], f["connected"], f["fallback_reason"]), ("local", False, "down"))
        self.assertTrue(f["last_error"])
        self.assertIsNotNone(sc.wait_for_log(lambda r: "cannot reach Redis" in r.get("msg", ""), timeout=5))
        redis.start()
        self.wait_mode([sc], "shared", 10)

    def test_tls_acl_user_and_database(self) -> None:
        redis = RedisServer(TMP, tls=True, password="fleet-pw").start()
        self.addCleanup(redis.stop)
        # OpenSSL's default trust store follows SSL_CERT_FILE: here, the test CA.
        env = dict(os.environ, SSL_CERT_FILE=PKI.ca_cert)
        good = self.fleet_config(redis)
        bad = dict(good, redis=redis.url.replace("fleet-pw", "wrong"))
        (sc,) = self.start_sidecars(good, count=1, env=env)
        (wrong,) = self.start_sidecars(bad, count=1, env=env)
        self.wait_mode([sc], "shared", 10)
        for s in (sc, wrong):
            conn = s.connection(HOST)
            for _ in range(3):
                self.assertEqual(sidecar.request(conn, "GET", "/api/v1/groups").status, 200)
            conn.close()
        f = sc.admin_json("/status")["fleet"]
        self.assertTrue(f["connected"])
        self.assertNotIn("fleet-pw", json.dumps(f))
        self.assertTrue(f["redis"].startswith("rediss://default:****@127.0.0.1:"), f["redis"])
        self.assertGreater(f["lease_grants"], 0)
        w = wrong.admin_json("/status")["fleet"]
        self.assertEqual(w["mode"], "local", "a refused AUTH keeps the sidecar local, still serving")
        self.assertIn("WRONGPASS", w["last_error"] or "")
        self.assertNotIn("wrong", json.dumps(w).replace("WRONGPASS", ""))


if __name__ == "__main__":
    unittest.main()
