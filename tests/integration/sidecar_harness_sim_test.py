"""Tests of the sidecar.py harness itself, against fake_sidecar.py (a stand-in process that
honours the CLI, ready-line and CA-file contract), so the harness is known to work before
and independently of the real binary.

Run: cd tests/integration && PYTHONPATH=../support python3 -m unittest -v sidecar_harness_sim_test
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import unittest

import fake_sidecar
import sidecar

FAKE = [sys.executable, fake_sidecar.__file__]


class HarnessTest(unittest.TestCase):
    def start(self, config: dict | None = None, **kw) -> sidecar.Sidecar:
        sc = sidecar.Sidecar(config, binary=FAKE, upstream_port=4443,
                             trust_file="/nonexistent/ca.crt", **kw).start()
        self.addCleanup(sc.stop)
        return sc

    def test_config_is_merged_over_loopback_defaults(self) -> None:
        sc = self.start({"upstream": {"response_timeout_ms": 500},
                         "rate_limit": {"max_wait_ms": 5}},
                        hosts=("acme.okta.com", "other.okta.com"))
        with open(sc.config_path, encoding="utf-8") as f:
            cfg = json.load(f)
        self.assertEqual(cfg["listen"], "127.0.0.1:0")
        self.assertEqual(cfg["admin_listen"], "127.0.0.1:0")
        self.assertEqual(cfg["state_dir"], sc.state_dir)
        self.assertEqual(cfg["upstream"], {
            "trust_file": "/nonexistent/ca.crt", "response_timeout_ms": 500,
            "resolve": {"acme.okta.com:443": "127.0.0.1:4443",
                        "other.okta.com:443": "127.0.0.1:4443"}})
        self.assertEqual(cfg["rate_limit"], {"max_wait_ms": 5})

    def test_ready_line_gives_addresses_and_helpers_work(self) -> None:
        sc = self.start(log_level="debug")
        self.assertTrue(sc.proxy_url.startswith("http://127.0.0.1:"))
        self.assertNotEqual(sc.listen[1], 0)
        self.assertNotEqual(sc.admin_listen[1], 0)
        self.assertEqual(sc.ca_cert_path, os.path.join(sc.state_dir, "ca.crt"))
        self.assertEqual(sc.get_admin("/healthz").body, b"ok")
        r = sc.https_via_proxy("GET", "https://acme.okta.com/api/v1/users?limit=2")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["path"], "/api/v1/users?limit=2")
        self.assertEqual(r.header("content-type"), "application/json")
        conn = sc.connection()
        for i in range(3):  # one tunnel, several requests
            r = sidecar.request(conn, "POST", f"/api/v1/users/{i}", body=b"abc")
            self.assertEqual((r.status, r.json()["body_len"]), (200, 3))
        conn.close()
        out = sc.curl("-i", "https://acme.okta.com/api/v1/groups")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn('"path": "/api/v1/groups"', out.stdout)
        logs = sc.logs()
        self.assertIn("plain text line on stdout", logs)
        self.assertEqual(sc.log_records()[0]["log_level"], "debug")
        self.assertIsNone(sc.wait_for_log(lambda r: r.get("msg") == "never", timeout=0.2))

    def test_stop_returns_exit_code_and_cleans_up(self) -> None:
        sc = self.start({"fake_exit_code": 7})
        state = sc.state_dir
        self.assertEqual(sc.stop(), 7)
        self.assertFalse(os.path.exists(state))
        self.assertEqual(sc.logs()[-1], json.dumps({"level": "info", "msg": "stopping"}))
        self.assertEqual(sc.stop(), 7, "stop twice is harmless")

    def test_sigkill_on_request(self) -> None:
        sc = self.start()
        self.assertEqual(sc.stop(signal.SIGKILL), -signal.SIGKILL)

    def test_failure_to_start_raises_with_the_log(self) -> None:
        t = time.monotonic()
        with self.assertRaises(RuntimeError) as ctx:
            sidecar.Sidecar({"fake_fail": True}, binary=FAKE).start()
        self.assertLess(time.monotonic() - t, 10, "exit is noticed without waiting it out")
        self.assertIn("config error", str(ctx.exception))
        self.assertIn("exit code 2", str(ctx.exception))

    def test_ready_timeout(self) -> None:
        with self.assertRaises(RuntimeError) as ctx:
            sidecar.Sidecar(binary=[sys.executable, "-c", "import time; time.sleep(30)"],
                            ready_timeout=0.5).start()
        self.assertIn("did not report ready within 0.5 s", str(ctx.exception))

    def test_missing_binary_env(self) -> None:
        old = os.environ.pop("OKTA_SIDECAR_BIN", None)
        try:
            with self.assertRaises(RuntimeError):
                sidecar.Sidecar()
        finally:
            if old is not None:
                os.environ["OKTA_SIDECAR_BIN"] = old

    def test_deep_merge(self) -> None:
        base = {"a": {"b": 1, "c": {"d": 2}}, "x": [1]}
        self.assertEqual(sidecar.deep_merge(base, {"a": {"c": {"e": 3}}, "x": None}),
                         {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "x": None})
        self.assertEqual(base, {"a": {"b": 1, "c": {"d": 2}}, "x": [1]}, "base untouched")


if __name__ == "__main__":
    unittest.main()
