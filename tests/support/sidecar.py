"""Starts the real okta-sidecar binary for an integration test and talks to it.

The binary comes from $OKTA_SIDECAR_BIN (set by tests/CMakeLists.txt). The harness writes a
JSON config (the test's dict merged over loopback defaults), starts the process with
`--log-format json`, collects every output line in a thread, and waits for the log line
`{"msg": "ready", "listen": "127.0.0.1:P", "admin_listen": "127.0.0.1:Q", ...}`.
"""

from __future__ import annotations

import copy
import dataclasses
import http.client
import json
import os
import re
import shutil
import signal as signal_module
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from typing import Any, Callable, Iterable, Optional

DEFAULT_HOSTS = ("acme.okta.com",)
READY_TIMEOUT_S = 20.0


def sidecar_binary() -> str:
    path = os.environ.get("OKTA_SIDECAR_BIN")
    if not path:
        raise RuntimeError("OKTA_SIDECAR_BIN is not set (run through ctest, or export it)")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"OKTA_SIDECAR_BIN={path} is not an executable file")
    return path


def deep_merge(base: dict, over: dict) -> dict:
    """base with over's keys replacing (dicts merged recursively; None values kept as null)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclasses.dataclass
class Response:
    """A fully read HTTP response."""

    status: int
    reason: str
    headers: list          # [(name, value), ...] as received
    body: bytes

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name: str) -> list:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(resp: http.client.HTTPResponse) -> Response:
    body = resp.read()
    return Response(resp.status, resp.reason, resp.getheaders(), body)


class Sidecar:
    """One running okta-sidecar process with its own temp state dir.

    `upstream_port`: every host in `hosts` (port 443) is resolved to 127.0.0.1:upstream_port.
    `trust_file`: the test CA that signed the upstream's certificate.
    `config`: merged over the defaults (listen/admin_listen on port 0, state_dir, upstream).
    """

    def __init__(self, config: Optional[dict] = None, *, upstream_port: Optional[int] = None,
                 trust_file: Optional[str] = None, hosts: Iterable[str] = DEFAULT_HOSTS,
                 log_level: str = "info", extra_args: Iterable[str] = (),
                 env: Optional[dict] = None, ready_timeout: float = READY_TIMEOUT_S,
                 binary: Optional[Any] = None, keep_state: bool = False) -> None:
        # binary: a path, or an argv prefix such as [sys.executable, "fake_sidecar.py"].
        binary = binary or sidecar_binary()
        self.command = [binary] if isinstance(binary, str) else list(binary)
        self.state_dir = tempfile.mkdtemp(prefix="okta-sidecar-test-")
        self.keep_state = keep_state
        # Test rigs reach the simulator's plain-HTTP port through absolute-form http:// and
        # port 80, which the product refuses by default (issue 14: no cleartext to intercepted
        # hosts); tests of those refusals override "access" with the defaults.
        base: dict = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0",
                      "state_dir": self.state_dir, "upstream": {},
                      "access": {"allow_cleartext": True, "allowed_ports": [443, 80]}}
        if trust_file:
            base["upstream"]["trust_file"] = trust_file
        if upstream_port is not None:
            base["upstream"]["resolve"] = {f"{h}:443": f"127.0.0.1:{upstream_port}"
                                           for h in hosts}
        self.config = deep_merge(base, config or {})
        # ctest runs some suites again with OKTA_SIDECAR_TEST_THREADS=1: one io thread, where
        # sessions run without strands (the default, 0, is one thread per core).
        if "threads" not in self.config and os.environ.get("OKTA_SIDECAR_TEST_THREADS"):
            self.config["threads"] = int(os.environ["OKTA_SIDECAR_TEST_THREADS"])
        self.config_path = os.path.join(self.state_dir, "config.json")
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.env = env
        self.ready_timeout = ready_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.ready_record: Optional[dict] = None
        self.listen: Optional[tuple] = None
        self.admin_listen: Optional[tuple] = None
        self._lines: list = []
        self._cond = threading.Condition()
        self._reader: Optional[threading.Thread] = None
        self._eof = False
        self.returncode: Optional[int] = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "Sidecar":
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=2)
        args = [*self.command, "--config", self.config_path, "--log-format", "json",
                "--log-level", self.log_level, *self.extra_args]
        env = dict(os.environ if self.env is None else self.env)
        for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                  "all_proxy", "NO_PROXY", "no_proxy"):
            env.pop(k, None)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.state_dir)
        self._reader = threading.Thread(target=self._read_output, name="sidecar-log",
                                        daemon=True)
        self._reader.start()
        rec = self.wait_for_log(lambda r: r.get("msg") == "ready" and "listen" in r
                                and "admin_listen" in r, timeout=self.ready_timeout)
        if rec is None:
            try:  # output ended: the exit status follows within moments
                exited: Optional[int] = self.proc.wait(2.0 if self._eof else 0.01)
            except subprocess.TimeoutExpired:
                exited = None
            self._terminate()
            why = (f"exited (exit code {exited}) before reporting ready" if exited is not None
                   else f"did not report ready within {self.ready_timeout} s")
            raise RuntimeError(f"okta-sidecar {why}; args {args}; config "
                               f"{json.dumps(self.config)}; log:\n" + "\n".join(self.logs()))
        self.ready_record = rec
        self.listen = _split_hostport(rec["listen"])
        self.admin_listen = _split_hostport(rec["admin_listen"])
        return self

    def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stop(self, signal: int = signal_module.SIGTERM, timeout: float = 15.0) -> int:
        """Signals the process (by PID), waits, kills it if needed; returns the exit code."""
        if self.proc is None:
            return self.returncode if self.returncode is not None else 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        if not self.keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return self.returncode

    def _terminate(self) -> None:
        try:
            self.stop(signal_module.SIGKILL, timeout=5)
        except OSError:
            pass

    def __enter__(self) -> "Sidecar":
        return self.start()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        code = self.stop()
        # A clean SIGTERM drain exits 0; anything else (a sanitizer report, a crash, a leak
        # found by LeakSanitizer at exit) fails the test that owned this sidecar.
        if exc_type is None and code not in (0, None):
            tail = "\n".join(self._lines[-40:]) if hasattr(self, "_lines") else ""
            raise AssertionError(f"okta-sidecar exited with {code} after SIGTERM; last log lines:\n{tail}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- logs --------------------------------------------------------------------------------------
    def logs(self) -> list:
        with self._cond:
            return list(self._lines)

    def log_records(self) -> list:
        """The log lines that parse as JSON objects."""
        return [r for r in (_parse(l) for l in self.logs()) if r is not None]

    def wait_for_log(self, pred: Callable[[dict], bool], timeout: float = 10.0,
                     start_index: int = 0) -> Optional[dict]:
        """The first JSON log record (from line start_index on) matching pred, or None."""
        deadline = time.monotonic() + timeout
        i = start_index
        with self._cond:
            while True:
                while i < len(self._lines):
                    rec = _parse(self._lines[i])
                    i += 1
                    if rec is not None and pred(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    return None
                self._cond.wait(left)

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def proxy_url(self) -> str:
        assert self.listen, "not started"
        return f"http://{self.listen[0]}:{self.listen[1]}"

    @property
    def admin_url(self) -> str:
        assert self.admin_listen, "not started"
        return f"http://{self.admin_listen[0]}:{self.admin_listen[1]}"

    @property
    def ca_cert_path(self) -> str:
        return os.path.join(self.state_dir, "ca.crt")

    def client_ssl_context(self) -> ssl.SSLContext:
        """Trusts only the sidecar's CA, as an app configured for the proxy would."""
        ctx = ssl.create_default_context(cafile=self.ca_cert_path)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    # -- admin -------------------------------------------------------------------------------------
    def get_admin(self, path: str, timeout: float = 10.0) -> Response:
        assert self.admin_listen, "not started"
        conn = http.client.HTTPConnection(*self.admin_listen, timeout=timeout)
        try:
            conn.request("GET", path)
            return read_response(conn.getresponse())
        finally:
            conn.close()

    def admin_json(self, path: str = "/status") -> Any:
        r = self.get_admin(path)
        if r.status != 200:
            raise AssertionError(f"GET {path} -> {r.status}: {r.body[:500]!r}")
        return r.json()

    # -- clients through the proxy ---------------------------------------------------------------
    def connection(self, host: str = "acme.okta.com", port: int = 443,
                   timeout: float = 30.0, context: Optional[ssl.SSLContext] = None,
                   proxy_headers: Optional[dict] = None) -> http.client.HTTPSConnection:
        """An HTTPS connection to host:port tunnelled (CONNECT) through the sidecar; it keeps
        the connection alive across requests like a pooled client would."""
        assert self.listen, "not started"
        conn = http.client.HTTPSConnection(self.listen[0], self.listen[1], timeout=timeout,
                                           context=context or self.client_ssl_context())
        conn.set_tunnel(host, port, headers=proxy_headers)
        return conn

    def raw_tunnel(self, host: str = "acme.okta.com", port: int = 443,
                   timeout: float = 10.0) -> ssl.SSLSocket:
        """A raw TLS socket inside an intercepted CONNECT tunnel, for tests that write their own
        bytes (pipelining, malformed requests, interim responses). Raises if CONNECT is refused."""
        assert self.listen, "not started"
        s = socket.create_connection(self.listen, timeout=timeout)
        try:
            s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(1)  # byte by byte: what follows the head belongs to TLS
                if not chunk:
                    raise AssertionError("proxy closed during CONNECT")
                head += chunk
            if not head.startswith(b"HTTP/1.1 200"):
                raise AssertionError(f"CONNECT refused: {head!r}")
            return self.client_ssl_context().wrap_socket(s, server_hostname=host)
        except BaseException:
            s.close()
            raise

    def https_via_proxy(self, method: str, url: str, headers: Optional[dict] = None,
                        body: Optional[bytes] = None, timeout: float = 30.0) -> Response:
        """One request on a fresh CONNECT tunnel (the connection is closed afterwards)."""
        u = urllib.parse.urlsplit(url)
        if u.scheme != "https":
            raise ValueError(f"https_via_proxy wants an https URL, got {url!r}")
        conn = self.connection(u.hostname, u.port or 443, timeout=timeout)
        try:
            return request(conn, method, _target(u), headers, body)
        finally:
            conn.close()

    def http_via_proxy(self, method: str, url: str, headers: Optional[dict] = None,
                       body: Optional[bytes] = None, timeout: float = 30.0) -> Response:
        """A plain-HTTP request in absolute form (`GET http://host/path`) to the proxy."""
        assert self.listen, "not started"
        conn = http.client.HTTPConnection(self.listen[0], self.listen[1], timeout=timeout)
        try:
            conn.request(method, url, body=body, headers=headers or {})
            return read_response(conn.getresponse())
        finally:
            conn.close()

    def curl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Real curl through the sidecar (`-x proxy --cacert ca`); text output."""
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        cmd = ["curl", "-sS", "--max-time", str(int(timeout)), "-x", self.proxy_url,
               "--cacert", self.ca_cert_path, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5,
                              env=env, check=False)


def shut_down(sc: "Sidecar", *servers: Any, tmp: Optional[str] = None) -> None:
    """Ends a suite: stops the sidecar, then the servers it started, removes its temp dir, and
    fails if the sidecar had died or did not exit 0 (with its last log lines)."""
    alive = sc.alive()
    code = sc.stop()
    for server in servers:
        server.stop()
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    if not alive or code != 0:
        raise AssertionError(f"okta-sidecar died or exited {code}:\n" + "\n".join(sc.logs()[-30:]))


def metric(sc: "Sidecar", name: str, **labels: str) -> float:
    """Sum of a Prometheus series over the samples whose labels include `labels`."""
    total = 0.0
    for line in sc.get_admin("/metrics").body.decode().splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Polls pred until it holds or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def request(conn: http.client.HTTPConnection, method: str, target: str,
            headers: Optional[dict] = None, body: Optional[bytes] = None) -> Response:
    """One request on an existing (possibly kept-alive) connection; the body is read fully."""
    conn.request(method, target, body=body, headers=headers or {})
    return read_response(conn.getresponse())


def _target(u: urllib.parse.SplitResult) -> str:
    return (u.path or "/") + (f"?{u.query}" if u.query else "")


def _split_hostport(text: str) -> tuple:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _parse(line: str) -> Optional[dict]:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None
