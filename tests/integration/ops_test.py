"""Operations: the admin endpoints of the real binary after real traffic through it.

/metrics is checked with Prometheus' own parser and linter (`promtool check metrics`, Debian
package `prometheus`) and then read back sample by sample: counters match the traffic sent,
histograms are well formed, and the callback gauges (bucket limit/remaining, queue depth,
in-flight, breaker state) agree with the Okta simulator. /status is checked against the
docs/architecture.md contract, and the probes/CA routes against theirs.

Run: cd tests/integration && PYTHONPATH=../support python3 -m unittest -v ops_test
"""

from __future__ import annotations

import http.client
import math
import re
import subprocess
import tempfile
import unittest

import okta_sim
import sidecar
import test_pki
from tools import free_port as closed_port, require_tool

ACME = "acme.okta.com"
BROKEN = "broken.okta.com"   # resolved to a closed port: its breaker opens




_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> tuple:
    """(types {family: type}, samples [(name, {label: value}, float)]) of exposition text."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            if not m:
                raise AssertionError(f"unparsable sample line: {line!r}")
            labels = dict(_LABEL.findall(m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def value(samples: list, name: str, **labels: str):
    """The one sample of `name` whose labels include `labels`, or None."""
    hits = [v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items())]
    if len(hits) > 1:
        raise AssertionError(f"{name}{labels} matches {len(hits)} samples")
    return hits[0] if hits else None


class OpsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.promtool = require_tool("promtool", "prometheus")
        cls.tmp = tempfile.mkdtemp(prefix="ops-test-")
        cls.pki = test_pki.make_pki(cls.tmp, names=(ACME, "127.0.0.1"))
        cls.sim = okta_sim.OktaSimulator(cls.pki.server_cert, cls.pki.server_key,
                                         limits={"users": 40}).start()
        cfg = {"upstream": {"resolve": {f"{BROKEN}:443": f"127.0.0.1:{closed_port()}"},
                            "connect_timeout_ms": 1000},
               "intercept_hosts": [ACME, BROKEN],
               "circuit_breaker": {"failure_threshold": 2, "open_ms": 60000},
               "retry": {"max_attempts": 1}}
        cls.sc = sidecar.Sidecar(cfg, upstream_port=cls.sim.port, trust_file=cls.pki.ca_cert,
                                 hosts=(ACME,)).start()
        # Traffic: 5 users + 2 groups on one kept-alive tunnel, 3 to the unreachable host
        # (2 failures open its breaker, the 3rd is refused fast), 1 to a host not allowed.
        conn = cls.sc.connection(ACME)
        cls.users = [sidecar.request(conn, "GET", "/api/v1/users?limit=1") for _ in range(5)]
        cls.groups = [sidecar.request(conn, "GET", "/api/v1/groups") for _ in range(2)]
        conn.close()
        cls.broken = [cls.sc.https_via_proxy("GET", f"https://{BROKEN}/api/v1/users")
                      for _ in range(3)]
        cls.refused = cls.sc.http_via_proxy("GET", "http://evil.example.com/")
        cls.metrics_response = cls.sc.get_admin("/metrics")
        cls.metrics_text = cls.metrics_response.body.decode()
        cls.types, cls.samples = parse_metrics(cls.metrics_text)

    @classmethod
    def tearDownClass(cls) -> None:
        sidecar.shut_down(cls.sc, cls.sim, tmp=cls.tmp)

    def test_traffic_was_as_planned(self) -> None:
        self.assertEqual([r.status for r in self.users], [200] * 5)
        self.assertEqual([r.status for r in self.groups], [200] * 2)
        self.assertEqual([r.status for r in self.broken], [502, 502, 503])
        self.assertEqual(self.broken[2].header("X-Okta-Sidecar-Error"), "circuit_open")
        self.assertEqual(self.refused.status, 403)

    def test_promtool_accepts_metrics(self) -> None:
        self.assertEqual(self.metrics_response.status, 200)
        self.assertEqual(self.metrics_response.header("Content-Type"),
                         "text/plain; version=0.0.4; charset=utf-8")
        p = subprocess.run([self.promtool, "check", "metrics"], input=self.metrics_text,
                           capture_output=True, text=True, timeout=30, check=False)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""),
                         "promtool check metrics found problems")

    def test_every_family_has_help_type_and_prefix(self) -> None:
        helps = set(re.findall(r"^# HELP (\S+) \S", self.metrics_text, re.M))
        self.assertEqual(helps, set(self.types))
        for name, kind in self.types.items():
            # process_* are the standard process metrics every Prometheus client exports.
            self.assertTrue(name.startswith(("okta_sidecar_", "process_")), name)
            if kind == "counter":
                self.assertTrue(name.endswith("_total"), name)
        for name, _, _ in self.samples:
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            self.assertTrue(name in self.types or self.types.get(family) == "histogram", name)

    def test_counters_count_the_traffic(self) -> None:
        s = self.samples
        self.assertEqual(self.types["okta_sidecar_requests_total"], "counter")
        self.assertEqual(value(s, "okta_sidecar_requests_total", host=ACME, bucket="users",
                               status="200"), 5)
        self.assertEqual(value(s, "okta_sidecar_requests_total", host=ACME, bucket="groups",
                               status="200"), 2)
        self.assertEqual(value(s, "okta_sidecar_upstream_responses_total", host=ACME,
                               bucket="users", status="200"), 5)
        self.assertEqual(value(s, "okta_sidecar_admissions_total", host=ACME, bucket="users",
                               result="admitted"), 5)
        self.assertEqual(value(s, "okta_sidecar_breaker_rejections_total", host=BROKEN), 1)
        self.assertIsNotNone(value(s, "okta_sidecar_local_replies_total",
                                   reason="host_not_allowed"), self.metrics_text)
        self.assertIsNotNone(value(s, "okta_sidecar_local_replies_total",
                                   reason="circuit_open"))
        failures = sum(v for n, l, v in s
                       if n == "okta_sidecar_upstream_failures_total" and l.get("host") == BROKEN)
        self.assertEqual(failures, 2)

    def test_histograms_are_well_formed(self) -> None:
        hists = [n for n, k in self.types.items() if k == "histogram"]
        self.assertIn("okta_sidecar_queue_wait_seconds", hists)
        self.assertIn("okta_sidecar_upstream_latency_seconds", hists)
        for h in hists:
            series: dict = {}
            for n, l, v in self.samples:
                if n == h + "_bucket":
                    key = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
                    series.setdefault(key, []).append((float(l["le"]), v))
            for key, buckets in series.items():
                les = [le for le, _ in buckets]
                self.assertEqual(les, sorted(les), f"{h}{key}: le not ascending")
                self.assertEqual(les[-1], math.inf, f"{h}{key}: no +Inf bucket")
                counts = [c for _, c in buckets]
                self.assertEqual(counts, sorted(counts), f"{h}{key}: not cumulative")
                labels = dict(key)
                self.assertEqual(value(self.samples, h + "_count", **labels), counts[-1])
                self.assertIsNotNone(value(self.samples, h + "_sum", **labels))
        self.assertEqual(value(self.samples, "okta_sidecar_queue_wait_seconds_count",
                               host=ACME, bucket="users"), 5)
        self.assertEqual(value(self.samples, "okta_sidecar_upstream_latency_seconds_count",
                               host=ACME), 7)

    def test_callback_gauges_agree_with_the_simulator(self) -> None:
        s = self.samples
        for g in ("okta_sidecar_bucket_limit", "okta_sidecar_bucket_remaining",
                  "okta_sidecar_queue_depth", "okta_sidecar_bucket_inflight",
                  "okta_sidecar_breaker_state", "okta_sidecar_host_inflight_cap",
                  "okta_sidecar_draining", "okta_sidecar_client_connections_open"):
            self.assertEqual(self.types.get(g), "gauge", g)
        sim_users = self.sim.bucket_state("users")
        self.assertEqual(value(s, "okta_sidecar_bucket_limit", host=ACME, bucket="users"), 40)
        self.assertEqual(value(s, "okta_sidecar_bucket_remaining", host=ACME, bucket="users"),
                         sim_users["remaining"])
        self.assertEqual(sim_users["remaining"], 35)
        self.assertEqual(value(s, "okta_sidecar_bucket_limit", host=ACME, bucket="groups"), 500)
        self.assertEqual(value(s, "okta_sidecar_queue_depth", host=ACME, bucket="users"), 0)
        self.assertEqual(value(s, "okta_sidecar_bucket_inflight", host=ACME, bucket="users"), 0)
        self.assertEqual(value(s, "okta_sidecar_breaker_state", host=ACME), 0)
        self.assertEqual(value(s, "okta_sidecar_breaker_state", host=BROKEN), 2)
        self.assertEqual(value(s, "okta_sidecar_draining"), 0)

    def test_status_json_contract(self) -> None:
        doc = self.sc.admin_json("/status")
        buckets = {(b["host"], b["bucket"]): b for b in doc["buckets"]}
        users = buckets[(ACME, "users")]
        for key in ("host", "bucket", "limit", "remaining", "reset", "queued", "inflight"):
            self.assertIn(key, users)
        self.assertEqual((users["limit"], users["remaining"]), (40, 35))
        self.assertEqual(users["reset"], self.sim.bucket_state("users")["reset"])
        self.assertEqual((users["queued"], users["inflight"]), (0, 0))
        breakers = {b["host"]: b["state"] for b in doc["breakers"]}
        self.assertEqual(breakers, {ACME: "closed", BROKEN: "open"})
        self.assertIs(doc["draining"], False)

    def test_probes_and_ca(self) -> None:
        self.assertEqual((self.sc.get_admin("/healthz").status, self.sc.get_admin("/healthz").body),
                         (200, b"ok"))
        r = self.sc.get_admin("/readyz")
        self.assertEqual((r.status, r.body), (200, b"ready"))
        r = self.sc.get_admin("/ca.crt")
        with open(self.sc.ca_cert_path, "rb") as f:
            self.assertEqual(r.body, f.read())
        self.assertEqual(r.header("Content-Type"), "application/x-pem-file")
        self.assertEqual(self.sc.get_admin("/nope").status, 404)
        conn = http.client.HTTPConnection(*self.sc.admin_listen, timeout=10)
        try:
            conn.request("POST", "/metrics", body=b"x")
            r = sidecar.read_response(conn.getresponse())
            self.assertEqual((r.status, r.header("Allow")), (405, "GET, HEAD"))
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
