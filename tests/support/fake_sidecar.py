"""A stand-in for the okta-sidecar binary, used only to test the sidecar.py harness itself.

It honours the parts of the command-line contract the harness relies on (`--config FILE
--log-format json --log-level L`), listens on the configured `listen`/`admin_listen` (port 0
allowed), writes `<state_dir>/ca.crt`, answers CONNECT by terminating TLS with a certificate
from that CA and replying `{"host":..., "path":..., "method":...}` to every request inside the
tunnel, serves `/healthz` on the admin port, prints the `"msg": "ready"` JSON log line, and exits
with `fake_exit_code` (default 0) on SIGTERM. `"fake_fail": true` makes it log an error and exit 2
instead of becoming ready.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import ssl
import sys
import threading
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_pki  # noqa: E402


def log(**fields: Any) -> None:
    print(json.dumps(fields), file=sys.stderr, flush=True)


class _Inner(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _any(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        out = json.dumps({"host": self.headers.get("Host"), "path": self.path,
                          "method": self.command, "body_len": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _any


class _Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tls_ctx: ssl.SSLContext

    def log_message(self, *args: Any) -> None:
        pass

    def do_CONNECT(self) -> None:
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        tls = self.tls_ctx.wrap_socket(self.connection, server_side=True)
        _Inner(tls, self.client_address, self.server)
        self.close_connection = True


class _Admin(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b"ok" if self.path == "/healthz" else b"{}"
        self.send_response(200 if self.path in ("/healthz", "/status") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(addr: str, handler: type) -> http.server.ThreadingHTTPServer:
    host, _, port = addr.rpartition(":")
    srv = http.server.ThreadingHTTPServer((host, int(port)), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--log-format", default="json")
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args()
    with open(args.config, encoding="utf-8") as f:
        cfg = json.load(f)
    log(level="info", msg="starting", log_level=args.log_level)
    if cfg.get("fake_fail"):
        log(level="error", msg="config error", key="fake_fail")
        return 2
    pki = test_pki.make_pki(cfg["state_dir"], names=("acme.okta.com", "localhost"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    _Proxy.tls_ctx = ctx
    # SIGTERM is blocked here, before any thread starts (threads inherit the mask), and
    # taken by sigwait below. A handler that set a threading.Event could deadlock: Python
    # runs it in the main thread, which may hold that Event's own lock inside wait().
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    proxy = _serve(cfg["listen"], _Proxy)
    admin = _serve(cfg["admin_listen"], _Admin)
    print("plain text line on stdout", flush=True)
    log(level="info", msg="ready", listen="%s:%d" % proxy.server_address,
        admin_listen="%s:%d" % admin.server_address)
    signal.sigwait({signal.SIGTERM})
    log(level="info", msg="stopping")
    proxy.shutdown()
    admin.shutdown()
    return int(cfg.get("fake_exit_code", 0))


if __name__ == "__main__":
    sys.exit(main())
