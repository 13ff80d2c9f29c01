"""Nothing lost under faults (issue 6 item 7): a bounded soak with many clients, random
upstream faults (hangs, resets, 5xx, slow, chunked and truncated bodies) and clients that go
away mid-request. Afterwards: every request got exactly one response or a close the client
observed, no descriptor leaked, memory stayed bounded, and the sidecar still serves.

The file name contains `soak`, so the TSan stage runs it too. OKTA_SOAK_SECONDS overrides
the duration (default 20).

Run: cd tests/integration && OKTA_SIDECAR_BIN=.../okta-sidecar PYTHONPATH=../support \
     python3 -m unittest -v soak_test
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import socket
import ssl
import tempfile
import threading
import time
import unittest

import okta_sim
import sidecar
import test_pki

metric = sidecar.metric

HOST = "acme.okta.com"
SECONDS = float(os.environ.get("OKTA_SOAK_SECONDS", "20"))
CLIENTS = 24
CLIENT_TIMEOUT_S = 20.0   # far above any answer the sidecar owes (response timeout 1 s x 3)
# Answers a client may see: Okta's own statuses and the sidecar's contract answers.
EXPECTED_STATUSES = {200, 400, 413, 500, 502, 503, 504}



def unaccounted_fds(pid: int, local_ports: set, remote_ports: set) -> int:
    """Descriptors other than the legitimately open sockets (connections on the sidecar's own
    ports: admin scrapes, clients; and to the upstream: the bounded pool), read from /proc in
    one pass: the socket tables first, then one listing of the descriptors, so a socket that
    closes meanwhile is in neither (counting the descriptors in a listing of their own, before
    the tables, made a socket closing in between look like a leak)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            local = int(cols[1].rsplit(":", 1)[1], 16)
            remote = int(cols[2].rsplit(":", 1)[1], 16)
            if cols[3] != "0A" and (local in local_ports or remote in remote_ports):  # 0A = LISTEN
                inodes.add(cols[9])
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed since the listing
        if not (link.startswith("socket:[") and link[8:-1] in inodes):
            count += 1
    return count


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


class Tally:
    """Outcomes of every request the clients made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: dict = {}
        self.closed = 0          # a close the client observed (reset, EOF, truncated body)
        self.no_answer = 0       # client timeout: the sidecar neither answered nor closed
        self.garbled = 0         # unparsable or unexpected bytes: a second/partial response
        self.abandoned = 0       # the client itself left mid-request (by design)
        self.details: list = []

    def status(self, st: int) -> None:
        with self.lock:
            self.statuses[st] = self.statuses.get(st, 0) + 1

    def add(self, field: str, detail: str = "") -> None:
        with self.lock:
            setattr(self, field, getattr(self, field) + 1)
            if detail and len(self.details) < 20:
                self.details.append(f"{field}: {detail}")

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())


PATHS = ["ok", "ok", "ok", "ok", "hang", "reset", "err", "slow", "chunk", "trunc", "echo"]


class SoakTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="soak-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        pki = test_pki.make_pki(self.tmp)
        # Budgets far above what the soak spends: this test is about faults, and a bucket
        # exhausted mid-soak would (rightly) hold requests in the queue for up to a minute.
        self.sim = okta_sim.OktaSimulator(pki.server_cert, pki.server_key, plain_http=True,
                                          idle_timeout=5.0,
                                          limits={b: 10**7 for b in okta_sim.DEFAULT_LIMITS}).start()
        self.addCleanup(self.sim.stop)
        s = self.sim
        s.add_fault("hang", path="/api/v1/users/hang*")
        s.add_fault("reset", path="/api/v1/users/reset*")
        s.add_fault("status", path="/api/v1/users/err*", status=500)
        s.add_fault("slow_body", path="/api/v1/users/slow*", chunk=400, interval=0.05, size=2000)
        s.add_fault("chunked", path="/api/v1/users/chunk*", chunks=4, interval=0.01)
        s.add_fault("truncate", path="/api/v1/users/trunc*", size=4000, send=100)
        s.add_fault("echo", path="/api/v1/users/echo*")
        self.sc = sidecar.Sidecar({
            "upstream": {"response_timeout_ms": 1000, "idle_timeout_ms": 3000,
                         "resolve": {f"{HOST}:80": f"127.0.0.1:{self.sim.http_port}"}},
            "client": {"header_timeout_ms": 2000, "idle_timeout_ms": 5000},
            "circuit_breaker": {"failure_threshold": 20, "open_ms": 300},
            "retry": {"max_attempts": 3, "base_backoff_ms": 20},
        }, upstream_port=self.sim.port, trust_file=pki.ca_cert).start()
        self.ctx = self.sc.client_ssl_context()

    def tearDown(self) -> None:
        code = self.sc.stop()
        self.assertEqual(code, 0, "clean drain after the soak:\n" + "\n".join(self.sc.logs()[-20:]))

    # -- one client -------------------------------------------------------------------------
    def new_conn(self, rng: random.Random) -> http.client.HTTPConnection:
        if rng.random() < 0.8:
            return self.sc.connection(HOST, timeout=CLIENT_TIMEOUT_S, context=self.ctx)
        return http.client.HTTPConnection(*self.sc.listen, timeout=CLIENT_TIMEOUT_S)

    def one_request(self, conn, rng: random.Random, tally: Tally) -> bool:
        """Returns False when the connection must be replaced."""
        kind = rng.choice(PATHS)
        path = f"/api/v1/users/{kind}{rng.randrange(10**6)}"
        target = path if isinstance(conn, http.client.HTTPSConnection) else f"http://{HOST}{path}"
        method, body = "GET", None
        if kind == "echo" or rng.random() < 0.15:
            method = "POST"
            body = os.urandom(rng.choice([10, 5000, 300_000, 1_500_000]))
        try:
            conn.request(method, target, body=body,
                         headers={"Content-Type": "application/octet-stream"} if body else {})
            resp = conn.getresponse()
            data = resp.read()
        except socket.timeout as e:
            tally.add("no_answer", f"{method} {kind}: {e}")
            if not getattr(self, "dumped", False):
                self.dumped = True
                print("STATUS", self.sc.get_admin("/status").body.decode())
            return False
        except (http.client.RemoteDisconnected, http.client.IncompleteRead,
                ConnectionError, ssl.SSLError) as e:
            tally.add("closed")
            return False
        except (http.client.BadStatusLine, http.client.HTTPException) as e:
            tally.add("garbled", f"{method} {kind}: {type(e).__name__} {e}")
            return False
        tally.status(resp.status)
        if resp.status not in EXPECTED_STATUSES:
            tally.add("garbled", f"{method} {kind}: unexpected status {resp.status}")
        if resp.status == 200 and kind == "echo" and data != body:
            tally.add("garbled", f"echo body differs ({len(data)} vs {len(body)})")
        return not resp.will_close

    def abandon(self, rng: random.Random, tally: Tally) -> None:
        """A client that goes away mid-request, in one of several ways."""
        how = rng.randrange(5)
        s = socket.create_connection(self.sc.listen, timeout=5)
        try:
            if how == 0:   # body announced, partly sent
                s.sendall(f"POST http://{HOST}/api/v1/users/echo HTTP/1.1\r\nHost: {HOST}\r\n"
                          f"Content-Length: 50000\r\n\r\n".encode() + b"x" * 1000)
            elif how == 1:  # waiting on a hung upstream
                s.sendall(f"GET http://{HOST}/api/v1/users/hang HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                time.sleep(rng.random() * 0.5)
            elif how == 2:  # reading a slow body
                s.sendall(f"GET http://{HOST}/api/v1/users/slow HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
                s.recv(100)
            elif how == 3:  # CONNECT, then gone before the TLS handshake
                s.sendall(f"CONNECT {HOST}:443 HTTP/1.1\r\nHost: {HOST}:443\r\n\r\n".encode())
                s.recv(100)
            else:           # half a request head
                s.sendall(f"GET http://{HOST}/api/v1/us".encode())
        except OSError:
            pass
        finally:
            if rng.random() < 0.5:  # RST instead of FIN
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        tally.add("abandoned")

    def worker(self, seed: int, stop: threading.Event, tally: Tally) -> None:
        rng = random.Random(seed)
        conn = self.new_conn(rng)
        try:
            while not stop.is_set():
                if rng.random() < 0.08:
                    self.abandon(rng, tally)
                    continue
                if not self.one_request(conn, rng, tally):
                    conn.close()
                    conn = self.new_conn(rng)
        finally:
            conn.close()

    # -- the soak ---------------------------------------------------------------------------
    def unexplained_fds(self) -> int:
        """Descriptors not accounted for by open client sessions or pooled upstream
        connections (those are legitimately open)."""
        pid = self.sc.proc.pid
        # Client connections, our own /metrics scrapes (admin port) and pooled upstream
        # connections (bounded by max_connections_per_host) are legitimately open; anything
        # else that stays open is a leak. Both counts come from /proc, not from metrics, so
        # they describe the same instant.
        local = {int(self.sc.admin_listen[1]), int(self.sc.listen[1])}
        remote = {int(self.sim.port), int(self.sim.http_port)}
        return unaccounted_fds(pid, local, remote)

    def test_soak_every_request_answered_no_leaks(self) -> None:
        pid = self.sc.proc.pid
        for _ in range(3):  # warm-up: leaf, pool, TLS contexts
            self.assertEqual(self.sc.https_via_proxy("GET", f"https://{HOST}/api/v1/users/ok").status, 200)
        time.sleep(0.2)
        base_unexplained = self.unexplained_fds()
        base_fds = fd_count(pid)
        base_rss = vm_kib(pid, "VmRSS")

        tally = Tally()
        stop = threading.Event()
        threads = [threading.Thread(target=self.worker, args=(1000 + i, stop, tally), daemon=True)
                   for i in range(CLIENTS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        peak_fds = base_fds
        while time.monotonic() - t0 < SECONDS:
            time.sleep(0.5)  # sampling period of the fd peak
            peak_fds = max(peak_fds, fd_count(pid))
            self.assertTrue(self.sc.alive(), "sidecar died:\n" + "\n".join(self.sc.logs()[-30:]))
        stop.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT_S + 10)
        self.assertFalse(any(t.is_alive() for t in threads), "a client is stuck")
        elapsed = time.monotonic() - t0

        # Quiescence: sessions end, timed-out upstream connections are closed. Settled means
        # three samples in a row (0.3 s): the first good one can fall between two closings.
        deadline = time.monotonic() + 15
        settled = 0
        while time.monotonic() < deadline and settled < 3:
            quiet = (metric(self.sc, "okta_sidecar_client_connections_open") == 0
                     and self.unexplained_fds() <= base_unexplained)
            settled = settled + 1 if quiet else 0
            time.sleep(0.1)
        after_unexplained = self.unexplained_fds()
        if after_unexplained > base_unexplained:
            print(f"[warning] {after_unexplained - base_unexplained} descriptor(s) above baseline")
            import subprocess
            print(subprocess.run(f"ls -l /proc/{pid}/fd; ss -tanpe | grep pid={pid},", shell=True,
                                 capture_output=True, text=True).stdout)
            print(self.sc.get_admin("/metrics").body.decode())
        after_fds = fd_count(pid)
        rss = vm_kib(pid, "VmRSS")
        total = tally.answered + tally.closed + tally.no_answer + tally.garbled
        print(f"\n[figure] soak {elapsed:.1f} s, {CLIENTS} clients: {total} requests "
              f"({total / elapsed:.0f}/s), answered {tally.answered} {dict(sorted(tally.statuses.items()))}, "
              f"observed closes {tally.closed}, abandoned by client {tally.abandoned}, "
              f"no answer {tally.no_answer}, garbled {tally.garbled}; fds base {base_fds} "
              f"peak {peak_fds} after {after_fds} (unexplained {base_unexplained} -> "
              f"{after_unexplained}); RSS {base_rss} -> {rss} KiB; "
              f"upstream faults {self.sim.stats()['faults_applied']}")
        self.assertEqual(tally.no_answer, 0, tally.details)
        self.assertEqual(tally.garbled, 0, tally.details)
        self.assertGreater(tally.answered, 100)
        self.assertGreater(tally.statuses.get(200, 0), 50)
        self.assertEqual(metric(self.sc, "okta_sidecar_client_connections_open"), 0)
        self.assertLessEqual(after_unexplained, base_unexplained, "descriptor leak")
        # A Debug build holds ~30 MiB at rest; the soak's peak working set is bounded by
        # CLIENTS x (1 MiB replay buffer + relay buffers). 128 MiB of growth is far above
        # that and far below what a per-request leak over thousands of requests would reach
        # under ASan/TSan it is the shadow memory that grows, still within the bound.
        if not os.environ.get("OKTA_SIDECAR_SANITIZED"):  # ASan/TSan shadow memory and quarantine
            self.assertLess(rss - base_rss, 128 * 1024)
        # Still serves. The last requests to finish were the slow failing ones (hangs), so
        # the breaker may have just opened: it must close again after its open time.
        statuses = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            statuses.append(self.sc.https_via_proxy("GET", f"https://{HOST}/api/v1/users/ok").status)
            if statuses[-1] == 200:
                break
            time.sleep(0.1)
        self.assertEqual(statuses[-1], 200, statuses)
        self.assertTrue(set(statuses) <= {200, 503}, statuses)
        self.assertEqual(self.sc.get_admin("/healthz").status, 200)


if __name__ == "__main__":
    unittest.main()
