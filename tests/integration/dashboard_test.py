"""The live dashboard (`GET /` on the admin port) in a real browser: headless Chromium from
Debian (`chromium`) loads the page of a running sidecar that has carried traffic to the Okta
simulator, runs its script (which polls /status), and the test reads the rendered DOM: the
buckets with limit/remaining, the queue, the breakers. A second run takes a screenshot, written
to the test's temp dir always and copied to docs/dashboard.png when UPDATE_SCREENSHOT=1.

The scene: `users` has spent its whole budget (limit 10) and holds one queued request,
`groups` has lost most of its budget to a noisy neighbour, and broken.okta.com (a closed
port) has an open breaker. The test waits for a few points of history (one per 5 s) and checks
/status/history and the small charts each bucket card draws from it.

Run: cd tests/integration && PYTHONPATH=../support python3 -m unittest -v dashboard_test
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import okta_sim
import sidecar
import test_pki
from tools import free_port as closed_port, require_tool

ACME = "acme.okta.com"
BROKEN = "broken.okta.com"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHROMIUM_TIMEOUT_S = 60
# Virtual time lets the page's timers (poll every 1 s) run without waiting in real time;
# Chromium pauses virtual time while the /status fetch is on the network.
VIRTUAL_TIME_MS = 2500




class _Dom(html.parser.HTMLParser):
    """Collects the elements with a class attribute: [(tag, attrs dict, text inside)]."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list = []
        self._open: list = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for rec in self._open:   # a tag boundary separates words, as a browser lays them out
            rec[2] += " "
        rec = [tag, dict(attrs), ""]
        self.elements.append(rec)
        if tag not in ("meta", "link", "br", "img", "input"):
            self._open.append(rec)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        for rec in self._open:
            rec[2] += data

    def find(self, cls: str, **attrs: str) -> list:
        return [e for e in self.elements
                if cls in e[1].get("class", "").split()
                and all(e[1].get(k) == v for k, v in attrs.items())]


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.chromium = require_tool("chromium", "chromium")
        cls.tmp = tempfile.mkdtemp(prefix="dashboard-test-")
        cls.pki = test_pki.make_pki(cls.tmp, names=(ACME,))
        cls.sim = okta_sim.OktaSimulator(cls.pki.server_cert, cls.pki.server_key,
                                         limits={"users": 10}).start()
        cfg = {"upstream": {"resolve": {f"{BROKEN}:443": f"127.0.0.1:{closed_port()}"},
                            "connect_timeout_ms": 1000},
               "intercept_hosts": [ACME, BROKEN],
               "circuit_breaker": {"failure_threshold": 2, "open_ms": 60000},
               "retry": {"max_attempts": 1},
               "rate_limit": {"max_wait_ms": 120000},
               "client": {"drain_timeout_ms": 500}}
        cls.sc = sidecar.Sidecar(cfg, upstream_port=cls.sim.port, trust_file=cls.pki.ca_cert,
                                 hosts=(ACME,)).start()
        conn = cls.sc.connection(ACME)
        for _ in range(10):
            assert sidecar.request(conn, "GET", "/api/v1/users").status == 200
        assert sidecar.request(conn, "GET", "/api/v1/groups").status == 200
        cls.sim.consume("groups", 320)     # a neighbour spends the budget behind our back
        assert sidecar.request(conn, "GET", "/api/v1/groups").status == 200
        conn.close()
        for _ in range(3):
            cls.sc.https_via_proxy("GET", f"https://{BROKEN}/api/v1/apps")
        # A few points of history while a neighbour keeps spending the groups budget and the
        # app uses it too, so the groups chart climbs.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            hist = {b["bucket"]: b for b in cls.sc.admin_json("/status/history")["buckets"]}
            if len(hist.get("groups", {}).get("t", [])) >= 3:
                break
            cls.sim.consume("groups", 5)
            assert cls.sc.https_via_proxy("GET", f"https://{ACME}/api/v1/groups").status == 200
            time.sleep(1)
        else:
            raise AssertionError("no history after 30 s")
        # One request waits for the users window to reset; it is answered (503) at shutdown.
        cls.queued_result: list = []
        cls.queued = threading.Thread(target=cls._queued_request, daemon=True)
        cls.queued.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            users = [b for b in cls.sc.admin_json()["buckets"] if b["bucket"] == "users"]
            if users and users[0]["queued"] == 1:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the 11th users request was not queued")
        # The history records one point per 5 s: wait for two more with the request queued.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            hist = {b["bucket"]: b for b in cls.sc.admin_json("/status/history")["buckets"]}
            if "users" in hist and hist["users"]["queued"][-2:] == [1, 1]:
                break
            time.sleep(0.25)
        else:
            raise AssertionError("no history of the queued users bucket after 30 s")

    @classmethod
    def _queued_request(cls) -> None:
        try:
            cls.queued_result.append(
                cls.sc.https_via_proxy("GET", f"https://{ACME}/api/v1/users", timeout=60).status)
        except OSError as e:
            cls.queued_result.append(e)

    @classmethod
    def tearDownClass(cls) -> None:
        code = cls.sc.stop()
        cls.queued.join(10)
        cls.sim.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if code != 0:
            raise AssertionError(f"okta-sidecar exited {code}:\n" + "\n".join(cls.sc.logs()[-30:]))

    def chromium_run(self, *args: str) -> subprocess.CompletedProcess:
        profile = tempfile.mkdtemp(prefix="profile-", dir=self.tmp)
        cmd = [self.chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               "--force-device-scale-factor=1", "--lang=en-US",
               f"--user-data-dir={profile}", f"--virtual-time-budget={VIRTUAL_TIME_MS}",
               *args, self.sc.admin_url + "/"]
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["HOME"] = profile   # keeps Chromium's caches out of the real home
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S,
                           env=env, check=False)
        self.assertEqual(p.returncode, 0, f"chromium failed:\n{p.stderr[-3000:]}")
        return p

    def test_rendered_dom_shows_buckets_queue_and_breakers(self) -> None:
        p = self.chromium_run("--dump-dom")
        dom = _Dom()
        dom.feed(p.stdout)
        body = dom.elements[[e[0] for e in dom.elements].index("body")]
        self.assertGreaterEqual(int(body[1].get("data-updates", "0")), 1,
                                "the page never rendered /status:\n" + p.stdout[:3000])
        status = self.sc.admin_json()
        expect = {(b["host"], b["bucket"]): b for b in status["buckets"]}
        cards = {(e[1]["data-host"], e[1]["data-bucket"]): e for e in dom.find("bucket")}
        self.assertEqual(set(cards), set(expect))
        users = cards[(ACME, "users")]
        self.assertEqual((users[1]["data-limit"], users[1]["data-remaining"]), ("10", "0"))
        self.assertIn("0 / 10 left", " ".join(users[2].split()))
        self.assertRegex(users[2], r"resets in (\d+s|now)")
        self.assertIn("queued 1", " ".join(users[2].split()))
        groups = cards[(ACME, "groups")]
        self.assertEqual(groups[1]["data-limit"], "500")
        self.assertEqual(groups[1]["data-remaining"], str(expect[(ACME, "groups")]["remaining"]))
        self.assertLess(int(groups[1]["data-remaining"]), 200)
        meters = [e for e in dom.elements if e[1].get("role") == "meter"]
        self.assertIn(("10", "0"), [(m[1]["aria-valuemax"], m[1]["aria-valuenow"]) for m in meters])
        breakers = {e[1]["data-host"]: e[1]["data-state"] for e in dom.find("breaker")}
        self.assertEqual(breakers, {ACME: "closed", BROKEN: "open"})
        self.assertIn("breaker open", " ".join(cards[(BROKEN, "apps")][2].split()))
        summary = {e[1]["id"]: " ".join(e[2].split()) for e in dom.find("tile")}
        self.assertEqual(summary["sum-queued"], "queued 1")
        self.assertEqual(summary["sum-breakers"], "breakers not closed 1 / 2")
        self.assertEqual(summary["sum-lowest"], "lowest budget left 0% users")
        self.assertEqual(dom.find("pill", id="state")[0][2].strip(), "live")

    def test_history_endpoint(self) -> None:
        doc = self.sc.admin_json("/status/history")
        self.assertEqual((doc["interval_ms"], doc["span_ms"]), (5000, 900000))
        hist = {(b["host"], b["bucket"]): b for b in doc["buckets"]}
        self.assertEqual(set(hist), {(b["host"], b["bucket"]) for b in self.sc.admin_json()["buckets"]})
        users = hist[(ACME, "users")]
        n = len(users["t"])
        self.assertGreaterEqual(n, 2)
        for column in ("limit", "remaining", "used", "queued", "inflight", "queue_wait_ms",
                       "absorbed_429"):
            self.assertEqual(len(users[column]), n, column)
        steps = [b - a for a, b in zip(users["t"], users["t"][1:])]
        self.assertTrue(all(4000 <= d <= 6500 for d in steps), steps)
        self.assertLess(abs(users["t"][-1] / 1000 - time.time()), 30)
        self.assertEqual((users["limit"][-1], users["remaining"][-1], users["used"][-1]), (10, 0, 10))
        self.assertEqual(users["queued"][-1], 1)
        groups = hist[(ACME, "groups")]
        self.assertEqual(groups["used"][-1], groups["limit"][-1] - groups["remaining"][-1])

    def test_rendered_history_charts(self) -> None:
        p = self.chromium_run("--dump-dom")
        dom = _Dom()
        dom.feed(p.stdout)
        body = dom.elements[[e[0] for e in dom.elements].index("body")]
        self.assertGreaterEqual(int(body[1].get("data-history", "0")), 1,
                                "the page never rendered /status/history")
        histories = dom.find("history")
        self.assertEqual(len(histories), len(dom.find("bucket")))
        for h in histories:
            self.assertGreaterEqual(int(h[1]["data-points"]), 2)
        charts = {}
        for e in dom.find("chart"):
            kind = [c for c in e[1]["class"].split() if c != "chart"][0]
            charts.setdefault(kind, []).append(" ".join(e[2].split()))
        self.assertEqual(set(charts), {"used", "queued", "wait", "absorbed"})
        self.assertIn("used 10 / 10", charts["used"])
        self.assertIn("queued 1", charts["queued"])
        lines = [e for e in dom.elements if e[0] == "path" and "line" in e[1].get("class", "")]
        self.assertGreaterEqual(len(lines), len(histories) + 2)  # queued in every card, used+limit where known
        used_paths = [e[1]["d"] for e in lines if "used" in e[1]["class"].split()]
        self.assertTrue(all(d.startswith("M") and d.count("L") >= 1 for d in used_paths), used_paths)

    def test_screenshot(self) -> None:
        out = os.path.join(self.tmp, "dashboard.png")
        self.chromium_run("--window-size=1280,820", f"--screenshot={out}")
        with open(out, "rb") as f:
            png = f.read()
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        self.assertEqual((width, height), (1280, 820))
        self.assertGreater(len(png), 20000, "a blank page compresses to almost nothing")
        keep = os.environ.get("OKTA_SIDECAR_SCREENSHOT_DIR")
        if keep:
            os.makedirs(keep, exist_ok=True)
            shutil.copy(out, os.path.join(keep, "dashboard.png"))
        if os.environ.get("UPDATE_SCREENSHOT") == "1":
            shutil.copy(out, os.path.join(REPO, "docs", "dashboard.png"))


if __name__ == "__main__":
    unittest.main()
