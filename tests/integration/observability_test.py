"""Observability of the real binary: what an SRE adopting okta-sidecar relies on.

- docker/monitoring/alerts.yaml passes `promtool check rules` and its unit tests
  (`promtool test rules alerts_test.yaml`); every metric named by an alert or by a query of
  docker/monitoring/grafana-dashboard.json is a family a live sidecar (fleet mode on, after
  traffic) declares on /metrics, so the alerts and panels cannot silently watch nothing.
- okta_sidecar_build_info and the process_* metrics read /proc/self at scrape time.
- okta_sidecar_config_last_reload_successful (+ timestamp) follow SIGHUP reloads.
- `--print-config` and GET /config give the effective configuration with the Redis password
  redacted; a bad configuration makes --print-config exit 2.
- A missing explicitly configured ca.cert_file / ca.key_file fails --check-config naming the key.
- GET /ca-bundle.pem and <state_dir>/ca-bundle.pem (0644): the system roots plus the local CA.
- Log levels are spelled as --log-level spells them ("warn"); the access log carries the peer
  address, the proxy-auth user, the traceparent trace id, and log.access_sample thins out
  successful requests while errors are always written.

Run: cd tests/integration && PYTHONPATH=../support python3 -m unittest -v observability_test
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import ssl
import stat
import subprocess
import tempfile
import time
import unittest

import okta_sim
import sidecar
import test_pki
from tools import free_port, require_tool

ACME = "acme.okta.com"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MONITORING = os.path.join(REPO, "docker", "monitoring")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# Names PromQL queries may use that no exporter declares: Prometheus' own per-target series.
PROMETHEUS_SYNTHETIC = {"up"}
PROMQL_WORDS = {"sum", "by", "rate", "max", "min", "count", "histogram_quantile", "or", "and",
                "vector", "on", "le", "without", "ignoring", "label_values", "group_left",
                "unless", "increase", "irate", "avg"}


def run(args: list, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def metric_names(expr: str) -> set:
    """The metric names a PromQL expression reads (label names and functions excluded)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)            # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)           # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d.*", n)}


def declared_families(metrics_text: str) -> set:
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", metrics_text, re.M):
        names.add(name)
        if kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


class ObservabilityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.promtool = require_tool("promtool", "prometheus")
        cls.tmp = tempfile.mkdtemp(prefix="observability-test-")
        cls.pki = test_pki.make_pki(cls.tmp, names=(ACME, "127.0.0.1"))
        cls.sim = okta_sim.OktaSimulator(cls.pki.server_cert, cls.pki.server_key,
                                         limits={"users": 40}).start()
        cls.auth_file = os.path.join(cls.tmp, "proxy-users")
        with open(cls.auth_file, "w", encoding="utf-8") as f:
            f.write("batch-job:s3cret-pw\n")
        os.chmod(cls.auth_file, 0o600)
        # Fleet mode towards a closed port: the sidecar runs in local mode and declares the
        # fleet families the alerts and the dashboard use.
        cls.cfg = {"intercept_hosts": [ACME],
                   "fleet": {"redis": f"redis://:redis-pw@127.0.0.1:{free_port()}/0",
                             "timeout_ms": 50},
                   "access": {"proxy_auth_file": cls.auth_file},
                   "upstream": {"insecure_skip_verify": False}}
        cls.sc = sidecar.Sidecar(cls.cfg, upstream_port=cls.sim.port, trust_file=cls.pki.ca_cert,
                                 hosts=(ACME,)).start()
        auth = "Basic " + base64.b64encode(b"batch-job:s3cret-pw").decode()
        conn = cls.sc.connection(ACME, proxy_headers={"Proxy-Authorization": auth})
        cls.responses = [sidecar.request(conn, "GET", "/api/v1/users?limit=1",
                                         {"traceparent": TRACEPARENT}) for _ in range(3)]
        conn.close()
        cls.metrics_text = cls.sc.get_admin("/metrics").body.decode()

    @classmethod
    def tearDownClass(cls) -> None:
        sidecar.shut_down(cls.sc, cls.sim, tmp=cls.tmp)

    # -- alerts and dashboard ------------------------------------------------------------------
    def test_promtool_accepts_and_unit_tests_the_alert_rules(self) -> None:
        p = run([self.promtool, "check", "rules", "alerts.yaml"], cwd=MONITORING)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = run([self.promtool, "test", "rules", "alerts_test.yaml"], cwd=MONITORING)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        import yaml  # noqa: PLC0415 (python3-yaml, scripts/deps.sh TEST_PACKAGES)
        with open(os.path.join(MONITORING, "alerts.yaml"), encoding="utf-8") as f:
            names = {r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"]}
        for want in ("OktaSidecarDown", "OktaSidecarBreakerOpen", "OktaSidecarFleetLocalMode",
                     "OktaSidecarUpstream429s", "OktaSidecarBudgetNearZero",
                     "OktaSidecarQueueWaitHigh"):
            self.assertIn(want, names)

    def queries(self) -> dict:
        import yaml  # noqa: PLC0415
        out = {}
        with open(os.path.join(MONITORING, "alerts.yaml"), encoding="utf-8") as f:
            for g in yaml.safe_load(f)["groups"]:
                for r in g["rules"]:
                    out["alert " + r["alert"]] = r["expr"]
        with open(os.path.join(MONITORING, "grafana-dashboard.json"), encoding="utf-8") as f:
            dash = json.load(f)
        for p in dash["panels"]:
            for t in p.get("targets", []):
                out[f"panel {p['title']!r} {t['refId']}"] = t["expr"]
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                # label_values(METRIC, LABEL): the metric is the query.
                m = re.fullmatch(r"label_values\((.+), *[a-zA-Z_]+\)", v["definition"])
                out["variable " + v["name"]] = m.group(1) if m else v["definition"]
        return out

    def test_every_queried_metric_is_exported(self) -> None:
        declared = declared_families(self.metrics_text) | PROMETHEUS_SYNTHETIC
        queries = self.queries()
        self.assertGreater(len(queries), 20)
        for where, expr in queries.items():
            names = metric_names(expr)
            self.assertTrue(names, f"{where}: names no metric: {expr}")
            self.assertLessEqual(names, declared, f"{where}: {expr}")

    def test_metric_name_extraction(self) -> None:
        self.assertEqual(metric_names('histogram_quantile(0.99, sum by (le, host) '
                                      '(rate(okta_sidecar_queue_wait_seconds_bucket{a="b"}[5m]))) > 10'),
                         {"okta_sidecar_queue_wait_seconds_bucket"})
        self.assertEqual(metric_names('up{job="okta-sidecar"} == 0'), {"up"})

    # -- build_info, process_*, reload ----------------------------------------------------------
    def test_build_info_and_process_metrics(self) -> None:
        version = run([sidecar.sidecar_binary(), "--version"]).stdout.split()[-1]
        self.assertEqual(sidecar.metric(self.sc, "okta_sidecar_build_info", version=version), 1)
        pid = self.sc.proc.pid
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            rss_kib = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
        rss = sidecar.metric(self.sc, "process_resident_memory_bytes")
        self.assertLess(abs(rss - rss_kib * 1024), 16 * 1024 * 1024, (rss, rss_kib))
        fds = sidecar.metric(self.sc, "process_open_fds")
        self.assertLess(abs(fds - len(os.listdir(f"/proc/{pid}/fd"))), 8)
        self.assertGreater(sidecar.metric(self.sc, "process_max_fds"), fds)
        start = sidecar.metric(self.sc, "process_start_time_seconds")
        self.assertLess(abs(start - os.stat(f"/proc/{pid}").st_mtime), 120)
        self.assertLessEqual(start, time.time())
        cpu = sidecar.metric(self.sc, "process_cpu_seconds_total")
        self.assertGreater(cpu, 0)
        self.assertLess(cpu, time.time() - start + 1)

    def test_reload_gauges_follow_sighup(self) -> None:
        tmp = tempfile.mkdtemp(prefix="observability-reload-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with sidecar.Sidecar({"intercept_hosts": [ACME]}, upstream_port=self.sim.port,
                             trust_file=self.pki.ca_cert) as sc:
            ok = "okta_sidecar_config_last_reload_successful"
            at = "okta_sidecar_config_last_reload_success_timestamp_seconds"
            self.assertEqual(sidecar.metric(sc, ok), 1)
            first = sidecar.metric(sc, at)
            self.assertLess(abs(first - time.time()), 60)
            with open(sc.config_path, encoding="utf-8") as f:
                good = f.read()
            with open(sc.config_path, "w", encoding="utf-8") as f:
                f.write('{"rate_limit": {"max_wiat_ms": 5}}')
            sc.proc.send_signal(signal.SIGHUP)
            self.assertTrue(sidecar.wait_until(lambda: sidecar.metric(sc, ok) == 0, 10))
            self.assertEqual(sidecar.metric(sc, at), first)
            time.sleep(1.1)  # the timestamp has a resolution finer than this; make it visible
            with open(sc.config_path, "w", encoding="utf-8") as f:
                f.write(good)
            sc.proc.send_signal(signal.SIGHUP)
            self.assertTrue(sidecar.wait_until(lambda: sidecar.metric(sc, ok) == 1, 10))
            self.assertGreater(sidecar.metric(sc, at), first)

    # -- effective configuration ------------------------------------------------------------------
    def test_print_config_and_admin_config_agree_and_redact(self) -> None:
        p = run([sidecar.sidecar_binary(), "--print-config", "--config", self.sc.config_path])
        self.assertEqual(p.returncode, 0, p.stderr)
        printed = json.loads(p.stdout)
        served = self.sc.admin_json("/config")
        self.assertEqual(printed, served)
        self.assertNotIn("redis-pw", p.stdout)
        self.assertNotIn("redis-pw", json.dumps(served))
        self.assertIn("****", served["fleet"]["redis"])
        self.assertNotIn("s3cret-pw", p.stdout)
        # Defaults are filled in.
        self.assertEqual(served["rate_limit"]["max_wait_ms"], 60000)
        self.assertEqual(served["ca"]["cert_file"], os.path.join(self.sc.state_dir, "ca.crt"))
        self.assertEqual(served["log"]["access_sample"], 1.0)

    def test_print_config_exits_2_on_a_bad_configuration(self) -> None:
        bad = os.path.join(self.tmp, "bad.json")
        with open(bad, "w", encoding="utf-8") as f:
            f.write('{"rate_limit": {"max_wiat_ms": 5}}')
        p = run([sidecar.sidecar_binary(), "--print-config", "--config", bad])
        self.assertEqual(p.returncode, 2)
        self.assertIn("rate_limit.max_wiat_ms", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_missing_explicit_ca_files_are_configuration_errors(self) -> None:
        for key in ("cert_file", "key_file"):
            with self.subTest(key=key):
                cfg = os.path.join(self.tmp, f"ca-{key}.json")
                missing = os.path.join(self.tmp, "no-such-dir", "ca.pem")
                with open(cfg, "w", encoding="utf-8") as f:
                    json.dump({"state_dir": os.path.join(self.tmp, "state"), "ca": {key: missing}}, f)
                p = run([sidecar.sidecar_binary(), "--check-config", "--config", cfg])
                self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
                self.assertIn(f"ca.{key}: \"{missing}\" does not exist", p.stderr)
                self.assertFalse(os.path.exists(os.path.dirname(missing)), "nothing was created")
        # The default paths still get a CA on first start (the sidecar of this suite did).
        self.assertTrue(os.path.exists(os.path.join(self.sc.state_dir, "ca.key")))

    # -- CA bundle ------------------------------------------------------------------------------
    def test_ca_bundle_holds_the_system_roots_and_the_local_ca(self) -> None:
        r = self.sc.get_admin("/ca-bundle.pem")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "application/x-pem-file")
        path = os.path.join(self.sc.state_dir, "ca-bundle.pem")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), r.body)
        with open(self.sc.ca_cert_path, "rb") as f:
            ca = f.read()
        self.assertTrue(r.body.endswith(ca))
        roots = ssl.get_default_verify_paths().openssl_cafile
        with open(roots, "rb") as f:
            self.assertTrue(r.body.startswith(f.read().rstrip(b"\n")))
        self.assertGreater(r.body.count(b"-----BEGIN CERTIFICATE-----"), 50)
        # A client that replaces its trust store with the bundle reaches Okta through the proxy.
        ctx = ssl.create_default_context(cafile=path)
        conn = self.sc.connection(ACME, context=ctx, proxy_headers={
            "Proxy-Authorization": "Basic " + base64.b64encode(b"batch-job:s3cret-pw").decode()})
        self.assertEqual(sidecar.request(conn, "GET", "/api/v1/users?limit=1").status, 200)
        conn.close()

    # -- logs -----------------------------------------------------------------------------------
    def test_access_log_fields(self) -> None:
        self.assertEqual([r.status for r in self.responses], [200] * 3)
        records = [r for r in self.sc.log_records()
                   if r.get("msg") == "access" and r.get("path", "").startswith("/api/v1/users")]
        self.assertEqual(len(records), 3, records)
        for rec in records:
            self.assertEqual(rec["peer"], "127.0.0.1")
            self.assertEqual(rec["user"], "batch-job")
            self.assertEqual(rec["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736")
            self.assertEqual(rec["level"], "info")
        self.assertFalse(any("s3cret" in line for line in self.sc.logs()))

    def test_levels_are_spelled_as_the_flag_and_sampling_keeps_errors(self) -> None:
        cfg = {"intercept_hosts": [ACME], "log": {"access_sample": 0.0},
               "upstream": {"insecure_skip_verify": True}}
        with sidecar.Sidecar(cfg, upstream_port=self.sim.port, trust_file=self.pki.ca_cert) as sc:
            warns = [r for r in sc.log_records() if "VERIFICATION IS OFF" in r.get("msg", "")]
            self.assertEqual([r["level"] for r in warns], ["warn"])
            self.assertFalse(any(r.get("level") == "warning" for r in sc.log_records()))
            ok = sc.https_via_proxy("GET", f"https://{ACME}/api/v1/users?limit=1")
            refused = sc.http_via_proxy("GET", "http://example.com/")
            self.assertEqual((ok.status, refused.status), (200, 403))
            self.assertTrue(sidecar.wait_until(
                lambda: any(r.get("msg") == "access" and r.get("status") == 403
                            for r in sc.log_records()), 5))
            access = [r for r in sc.log_records() if r.get("msg") == "access"]
            self.assertEqual([r["status"] for r in access], [403], "only the refusal is written")


if __name__ == "__main__":
    unittest.main()
