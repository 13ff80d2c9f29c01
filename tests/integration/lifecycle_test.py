"""Lifecycle of the real binary: the systemd notify protocol, SIGHUP reload, SIGTERM drain.

- notify: the test binds an AF_UNIX datagram socket, passes it as $NOTIFY_SOCKET (and
  $WATCHDOG_USEC), and reads what the sidecar sends: READY=1 once both listeners accept,
  WATCHDOG=1 pings at half the watchdog period (also during the drain), RELOADING=1 with
  MONOTONIC_USEC then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM (sd_notify(3)).
- reload: a changed valid config (a host added to intercept_hosts) takes effect on the
  client's open keep-alive connection; an invalid one is refused, logged with the key, and
  the old configuration keeps serving.
- drain: SIGTERM turns /readyz 503 and stops accepting; an in-flight slow request completes;
  a queued request gets 503 shutting_down once client.drain_timeout_ms has passed; exit 0.

Run: cd tests/integration && PYTHONPATH=../support python3 -m unittest -v lifecycle_test
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import unittest

import okta_sim
import sidecar
import test_pki

ACME = "acme.okta.com"
BETA = "beta.okta.com"


class NotifySocket:
    """The service manager's end of sd_notify: a bound AF_UNIX datagram socket."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list = []   # [(time.monotonic(), {key: value})]

    def close(self) -> None:
        self.sock.close()

    def wait_for(self, key: str, value: str = "1", timeout: float = 10.0,
                 start: int = 0) -> int:
        """Index of the first message (from start on) assigning key=value; reads as needed."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            while i < len(self.messages):
                if self.messages[i][1].get(key) == value:
                    return i
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key}={value} within {timeout} s; got "
                                     f"{[m for _, m in self.messages[start:]]}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            self.messages.append((time.monotonic(), fields))


def connects(addr: tuple) -> bool:
    try:
        socket.create_connection(addr, timeout=2).close()
        return True
    except OSError:
        return False


class LifecycleBase(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="lifecycle-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.pki = test_pki.make_pki(self.tmp, names=(ACME, BETA))

    def simulator(self, **kw) -> okta_sim.OktaSimulator:
        sim = okta_sim.OktaSimulator(self.pki.server_cert, self.pki.server_key, **kw).start()
        self.addCleanup(sim.stop)
        return sim

    def sidecar(self, sim, config: dict, **kw) -> sidecar.Sidecar:
        sc = sidecar.Sidecar(config, upstream_port=sim.port, trust_file=self.pki.ca_cert,
                             hosts=(ACME, BETA), **kw).start()
        self.addCleanup(sc.stop, signal.SIGKILL)
        return sc


class NotifyTest(LifecycleBase):
    def test_ready_watchdog_reload_stopping(self) -> None:
        sim = self.simulator()
        ns = NotifySocket(self.tmp)
        self.addCleanup(ns.close)
        env = dict(os.environ, NOTIFY_SOCKET=ns.path, WATCHDOG_USEC="200000")
        env.pop("WATCHDOG_PID", None)
        sc = sidecar.Sidecar({}, upstream_port=sim.port, trust_file=self.pki.ca_cert,
                             env=env)
        # start() returns after the ready log line; READY=1 follows it, never precedes it.
        sc.start()
        self.addCleanup(sc.stop, signal.SIGKILL)
        ready = ns.wait_for("READY")
        self.assertEqual(ns.messages[ready][1].get("STATUS"), "serving")
        self.assertTrue(connects(sc.listen) and connects(sc.admin_listen))
        self.assertEqual(sc.get_admin("/readyz").status, 200)

        # WATCHDOG_USEC=200 ms: a ping every 100 ms (half the period, sd_watchdog_enabled(3)).
        first = ns.wait_for("WATCHDOG")
        fifth = first
        for _ in range(4):
            fifth = ns.wait_for("WATCHDOG", start=fifth + 1, timeout=2)
        spacing = (ns.messages[fifth][0] - ns.messages[first][0]) / 4
        self.assertGreater(spacing, 0.06)
        self.assertLess(spacing, 0.35, "pings far slower than WATCHDOG_USEC/2")

        before_us = time.monotonic_ns() // 1000   # CLOCK_MONOTONIC, as MONOTONIC_USEC
        sc.proc.send_signal(signal.SIGHUP)
        reloading = ns.wait_for("RELOADING", start=fifth + 1)
        stamp = int(ns.messages[reloading][1]["MONOTONIC_USEC"])
        self.assertGreaterEqual(stamp, before_us)
        self.assertLess(stamp, time.monotonic_ns() // 1000)
        ns.wait_for("READY", start=reloading + 1)
        self.assertIsNotNone(sc.wait_for_log(lambda r: r.get("msg") == "configuration reloaded"))

        # A slow request keeps the drain going, so the pings can be seen to continue.
        sim.add_fault("hang", "/api/v1/groups", seconds=1.0)
        slow = threading.Thread(
            target=lambda: sc.https_via_proxy("GET", f"https://{ACME}/api/v1/groups"))
        slow.start()
        self._wait(lambda: sim.stats()["inflight"] == 1)
        n = len(ns.messages)
        sc.proc.send_signal(signal.SIGTERM)
        stopping = ns.wait_for("STOPPING", start=n)
        ns.wait_for("WATCHDOG", start=stopping + 1, timeout=2)
        slow.join(10)
        self.assertEqual(sc.stop(), 0)

    def test_no_pings_for_another_pid_or_without_watchdog(self) -> None:
        sim = self.simulator()
        for extra in ({"WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}, {}):
            with self.subTest(env=extra):
                ns = NotifySocket(tempfile.mkdtemp(dir=self.tmp))
                self.addCleanup(ns.close)
                env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHDOG_")}
                env.update(extra, NOTIFY_SOCKET=ns.path)
                sc = self.sidecar(sim, {}, env=env)
                ns.wait_for("READY")
                time.sleep(0.4)   # long enough for several 50 ms pings, were any sent
                sc.proc.send_signal(signal.SIGTERM)
                ns.wait_for("STOPPING")
                self.assertEqual(sc.stop(), 0)
                self.assertNotIn("WATCHDOG", {k for _, m in ns.messages for k in m})

    @staticmethod
    def _wait(pred, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            time.sleep(0.01)


class ReloadTest(LifecycleBase):
    def rewrite_config(self, sc: sidecar.Sidecar, cfg: dict) -> None:
        tmp = sc.config_path + ".new"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        os.replace(tmp, sc.config_path)

    def reload(self, sc: sidecar.Sidecar, msg: str) -> dict:
        start = len(sc.logs())
        sc.proc.send_signal(signal.SIGHUP)
        rec = sc.wait_for_log(lambda r: r.get("msg", "").startswith(("configuration reloaded",
                                                                     "reload rejected")),
                              start_index=start)
        self.assertIsNotNone(rec, "no reload outcome logged")
        self.assertEqual(rec["msg"], msg, rec)
        return rec

    @staticmethod
    def beta_status(sc: sidecar.Sidecar) -> int:
        """Status of a request to beta: a refused CONNECT (403 host_not_allowed) counts too."""
        try:
            return sc.https_via_proxy("GET", f"https://{BETA}/api/v1/users").status
        except OSError as e:
            if str(e).startswith("Tunnel connection failed: "):
                return int(str(e).split()[3])
            raise

    def proxy_connections(self, sc: sidecar.Sidecar) -> float:
        text = sc.get_admin("/metrics").body.decode()
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                   if l.startswith('okta_sidecar_client_connections_total{kind="proxy"}'))

    def test_valid_change_applies_on_open_connection_invalid_keeps_old(self) -> None:
        sim = self.simulator()
        sc = self.sidecar(sim, {"intercept_hosts": [ACME]})
        conn = sc.connection(ACME)
        self.addCleanup(conn.close)
        self.assertEqual(sidecar.request(conn, "GET", "/api/v1/users").status, 200)
        sock = conn.sock
        self.assertEqual(self.beta_status(sc), 403)
        # An absolute-form http:// connection naming beta: refused, and kept open.
        plain = http.client.HTTPConnection(*sc.listen, timeout=10)
        self.addCleanup(plain.close)
        plain.request("GET", f"http://{BETA}/api/v1/users")
        r = plain.getresponse()
        r.read()
        self.assertEqual((r.status, r.getheader("X-Okta-Sidecar-Error")), (403, "host_not_allowed"))
        connections = self.proxy_connections(sc)

        cfg = json.loads(json.dumps(sc.config))
        cfg["intercept_hosts"] = [ACME, BETA]
        cfg["rate_limit"] = {"max_wait_ms": 5000}
        cfg["access"] = {**cfg.get("access", {}), "allow_cleartext": False}
        self.rewrite_config(sc, cfg)
        self.reload(sc, "configuration reloaded")
        self.assertEqual(sidecar.request(conn, "GET", "/api/v1/users").status, 200)
        self.assertIs(conn.sock, sock, "the keep-alive connection was replaced")
        self.assertEqual(self.proxy_connections(sc), connections,
                         "the client had to reconnect after the reload")
        self.assertEqual(self.beta_status(sc), 200)
        # The open plain connection gets the new policy's answer too: beta is intercepted now,
        # so http:// to it is cleartext (refused, and the connection closed).
        plain.request("GET", f"http://{BETA}/api/v1/users")
        r = plain.getresponse()
        r.read()
        self.assertEqual((r.status, r.getheader("X-Okta-Sidecar-Error")), (403, "cleartext_refused"))

        bad = json.loads(json.dumps(cfg))
        bad["intercept_hosts"] = [ACME]           # would take beta away, were it applied
        bad["rate_limit"] = {"max_wait_ms": "soon"}
        self.rewrite_config(sc, bad)
        rec = self.reload(sc, "reload rejected; keeping the running configuration")
        self.assertIn("max_wait_ms", json.dumps(rec.get("errors")))
        self.assertTrue(sc.alive())
        self.assertEqual(sidecar.request(conn, "GET", "/api/v1/users").status, 200)
        self.assertIs(conn.sock, sock)
        self.assertEqual(self.beta_status(sc), 200,
                         "the old configuration (beta allowed) must stay in force")
        self.assertEqual(sc.get_admin("/readyz").status, 200)

        self.rewrite_config(sc, {**bad, "listen": "not an address"})
        self.reload(sc, "reload rejected; keeping the running configuration")
        self.assertEqual(sidecar.request(conn, "GET", "/api/v1/users").status, 200)
        self.assertEqual(sc.stop(), 0)


class DrainTest(LifecycleBase):
    DRAIN_MS = 2000

    def test_sigterm_drains(self) -> None:
        # users: one request per window, so the second one queues (max_wait_ms allows it).
        sim = self.simulator(limits={"users": 1})
        sc = self.sidecar(sim, {"client": {"drain_timeout_ms": self.DRAIN_MS},
                                "rate_limit": {"max_wait_ms": 120000}})
        self.assertEqual(sc.https_via_proxy("GET", f"https://{ACME}/api/v1/users").status, 200)
        sim.add_fault("hang", "/api/v1/groups", seconds=1.0)

        results: dict = {}

        def call(name: str, path: str) -> None:
            try:
                results[name] = sc.https_via_proxy("GET", f"https://{ACME}{path}", timeout=30)
            except OSError as e:
                results[name] = e

        slow = threading.Thread(target=call, args=("slow", "/api/v1/groups"))
        queued = threading.Thread(target=call, args=("queued", "/api/v1/users"))
        slow.start()
        queued.start()
        NotifyTest._wait(lambda: sim.stats()["inflight"] == 1)
        NotifyTest._wait(lambda: any(b["bucket"] == "users" and b["queued"] == 1
                                     for b in sc.admin_json()["buckets"]))

        term_at = time.monotonic()
        sc.proc.send_signal(signal.SIGTERM)
        NotifyTest._wait(lambda: sc.get_admin("/readyz").status == 503, timeout=2)
        r = sc.get_admin("/readyz")
        self.assertEqual((r.status, r.body), (503, b"draining"))
        self.assertFalse(connects(sc.listen), "still accepting proxy connections while draining")
        self.assertEqual(sc.get_admin("/healthz").status, 200)
        self.assertIs(sc.admin_json()["draining"], True)

        slow.join(10)
        queued.join(15)
        slow_r, queued_r = results["slow"], results["queued"]
        self.assertIsInstance(slow_r, sidecar.Response, slow_r)
        self.assertEqual(slow_r.status, 200, "the in-flight request must complete")
        self.assertIsInstance(queued_r, sidecar.Response, queued_r)
        waited = time.monotonic() - term_at
        self.assertEqual(queued_r.status, 503)
        self.assertEqual(queued_r.header("X-Okta-Sidecar-Error"), "shutting_down")
        self.assertIsNotNone(queued_r.header("Retry-After"))
        self.assertEqual(queued_r.json()["errorCauses"], [])
        self.assertGreaterEqual(waited, self.DRAIN_MS / 1000 - 0.1,
                                "queued request answered before the drain deadline")
        self.assertLess(waited, self.DRAIN_MS / 1000 + 3)
        self.assertEqual(sim.stats()["status_counts"].get(200), 2,
                         "the queued request must not reach upstream")
        self.assertEqual(sc.stop(timeout=10), 0)


if __name__ == "__main__":
    unittest.main()
