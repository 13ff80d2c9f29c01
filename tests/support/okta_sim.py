"""An Okta simulator for the integration tests and the benchmarks.

It misbehaves the way Okta does (docs/okta-behaviour.md):
- per-bucket windows that are NOT aligned to the clock: a window opens with the first request
  after the previous one ended; `X-Rate-Limit-Limit/Remaining/Reset` (reset = epoch seconds,
  ceil of the window end), `Date` and `X-Okta-Request-Id` on every response;
- a 429 E0000047 when a bucket is exhausted, without processing the request;
- an org-wide concurrency limit whose 429 says limit 0, remaining 0 and a reset ~115 s ahead;
- a clock skew (its `Date` and resets run ahead of or behind real time);
- a noisy neighbour that spends a bucket's budget behind the client's back;
- fault injection (hang, connection reset, 5xx bursts, trickled, chunked, large, truncated and
  echoed bodies), switchable at run time;
- Bearer/SSWS token checks like Okta's (signature ignored; exp, nbf, iss, aud, scp), plus
  revoked tokens (by `jti`) and admin-role/assignment/policy denials (`deny`): a 403 E0000006
  for a credential whose scopes are fine;
- optionally a copy of every answer as sent (`record_responses`), so tests can prove that a
  proxy passed a response through byte for byte.

Use it in-process (`with OktaSimulator(cert_file=..., key_file=...) as sim: sim.port`) or as a
program (`python3 okta_sim.py --port 0 --cert C --key K --window 2 --limit users=50`), which
prints `{"port": N, ...}` as one JSON line on stdout and is controlled over `/__sim/*`.
Only the Python standard library is used.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import email.utils
import fnmatch
import hashlib
import http.server
import json
import math
import random
import re
import select
import signal
import socket
import ssl
import string
import struct
import sys
import threading
import time
import urllib.parse
from typing import Any, Optional

MIB = 1024 * 1024

# Typical per-minute limits (docs/okta-behaviour.md, "Endpoint groups"): only defaults for tests and
# benchmarks; real orgs differ, which is why the sidecar learns them from the headers.
DEFAULT_LIMITS = {
    "users": 600,
    "user": 2000,
    "user-write": 600,
    "user-me": 40,
    "groups": 500,
    "group": 1000,
    "apps": 100,
    "app": 500,
    "authn": 600,
    "sessions": 750,
    "logs": 120,
    "events": 100,
    "oauth-clients": 100,
    "token": 2000,
    "authorize": 2000,
    "api-other": 1200,
    "oauth-other": 2000,
    "oauth-as-other": 600,
}

# Okta's concurrency 429 carries a reset that is only a hint, seen 113-116 s ahead of Date.
CONCURRENCY_RESET_AHEAD_S = 115

_ALNUM = string.ascii_letters + string.digits
_rng = random.Random()


def _rand_id(n: int = 20) -> str:
    return "".join(_rng.choices(_ALNUM, k=n))


def okta_error(code: str, summary: str, causes: tuple = ()) -> dict:
    """A body in Okta's error shape."""
    return {"errorCode": code, "errorSummary": summary, "errorLink": code,
            "errorId": "oae" + _rand_id(22),
            "errorCauses": [{"errorSummary": c} for c in causes]}


def http_date(epoch: float) -> str:
    """RFC 9110 section 5.6.7 IMF-fixdate."""
    return email.utils.formatdate(epoch, usegmt=True)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict, header: Optional[dict] = None) -> str:
    """An Okta-looking JWT; the signature is random bytes (Okta's is never checked here)."""
    header = header or {"kid": "sim-key", "alg": "RS256"}
    return ".".join([_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()),
                     _b64url(_rng.randbytes(64))])


# JWS compact serialization (RFC 7515 section 7.1): three base64url parts and nothing else, so
# a token in quotes or with a stray character fails Okta's signature check even if its claims
# would decode.
_JWS_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def decode_jwt_claims(token: str) -> Optional[dict]:
    """The claims of a JWT, or None when it is not three base64url parts with a JSON payload."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


# ------------------------------------------------------------------------------------------
# Classification

@dataclasses.dataclass(frozen=True)
class Route:
    """Where a request lands: its bucket (None = not rate limited) and what serves it."""

    bucket: Optional[str]        # bucket group name, e.g. "users"
    instance: Optional[str]      # e.g. the authorization server id for "token"
    family: str                  # resource family the handler and the scope table use
    auth_server: Optional[str]   # None = org authorization server
    exists: bool = True          # False -> 404 E0000007

    @property
    def bucket_key(self) -> Optional[str]:
        if self.bucket is None:
            return None
        return self.bucket if self.instance is None else f"{self.bucket}:{self.instance}"


_API_FAMILIES = {"users", "groups", "apps", "authn", "sessions", "logs", "events", "meta",
                 "policies", "authorizationServers", "idps", "zones", "roles", "features"}


def classify(method: str, path: str) -> Route:
    """Okta's endpoint groups (docs/okta-behaviour.md): exact paths first, then the longest prefix."""
    method = method.upper()
    if len(path) > 1:
        path = path.rstrip("/")
    seg = [s for s in path.split("/") if s]
    if path.startswith("/.well-known/") or "/.well-known/" in path:
        return Route(None, None, "discovery", None)
    if len(seg) >= 2 and seg[0] == "api" and seg[1] == "v1":
        rest = seg[2:]
        if not rest:
            return Route("api-other", None, "none", None, exists=False)
        top = rest[0]
        write = method in ("POST", "PUT", "DELETE", "PATCH")
        if top == "users":
            if len(rest) == 1:
                return Route("users", None, "users", None)
            if len(rest) == 2 and rest[1] == "me":
                return Route("user-me", None, "users", None)
            if len(rest) == 2:
                return Route("user-write" if write else "user", None, "users", None)
            return Route("users", None, "users", None)
        if top in ("groups", "apps"):
            exact_one = len(rest) == 2
            name = {"groups": ("groups", "group"), "apps": ("apps", "app")}[top]
            return Route(name[1] if exact_one else name[0], None, top, None)
        if top == "authn":
            return Route("authn", None, "authn", None)
        if top == "sessions":
            return Route("sessions", None, "sessions", None)
        if top == "logs" and method == "GET":
            return Route("logs", None, "logs", None)
        if top == "events" and method == "GET":
            return Route("events", None, "logs", None)
        return Route("api-other", None, top if top in _API_FAMILIES else "none", None,
                     exists=top in _API_FAMILIES)
    if seg and seg[0] == "oauth2":
        if len(seg) >= 2 and seg[1] == "v1":
            as_id, rest = None, seg[2:]
        elif len(seg) >= 3 and seg[2] == "v1":
            as_id, rest = seg[1], seg[3:]
        else:
            return Route("oauth-other", None, "none", None, exists=False)
        ep = rest[0] if rest else ""
        if ep == "keys":
            return Route(None, None, "keys", as_id)
        if ep == "token":
            return Route("token", as_id or "org", "token", as_id)
        if ep == "authorize":
            return Route("authorize", as_id or "org", "authorize", as_id)
        if ep == "clients" and as_id is None:
            return Route("oauth-clients", None, "clients", None)
        known = ep in ("introspect", "revoke", "userinfo", "logout")
        if as_id is None:
            return Route("oauth-other", None, ep if known else "none", None, exists=known)
        return Route("oauth-as-other", as_id, ep if known else "none", as_id, exists=known)
    return Route(None, None, "none", None, exists=False)


# Okta management scopes per resource family (read for GET/HEAD, manage for writes); manage
# implies read, as in Okta.
_SCOPES = {"users": "okta.users", "groups": "okta.groups", "apps": "okta.apps",
           "logs": "okta.logs", "sessions": "okta.sessions", "clients": "okta.clients",
           "policies": "okta.policies", "authorizationServers": "okta.authorizationServers",
           "idps": "okta.idps", "zones": "okta.networkZones", "roles": "okta.roles"}


def required_scope(method: str, route: Route, path: str) -> Optional[str]:
    base = _SCOPES.get(route.family)
    if base is None:
        if route.family == "userinfo":
            return "openid"
        return None
    if route.family == "users" and route.bucket == "user-me":
        return "okta.users.read.self" if method in ("GET", "HEAD") else "okta.users.manage.self"
    if route.family == "logs":
        return "okta.logs.read"
    return base + (".read" if method in ("GET", "HEAD") else ".manage")


def _scope_satisfied(needed: str, granted: set) -> bool:
    if needed in granted:
        return True
    if needed.endswith(".read"):
        return needed[: -len(".read")] + ".manage" in granted
    if needed.endswith(".read.self"):
        return needed.replace(".read.self", ".manage.self") in granted
    return False


def _needs_auth(route: Route) -> bool:
    if route.family in ("discovery", "keys", "token", "authorize", "authn", "none"):
        return False
    return True


# ------------------------------------------------------------------------------------------
# State

@dataclasses.dataclass
class Window:
    """One rate-limit window of one bucket, with what happened in it."""

    bucket: str
    start: float   # on the simulator's clock (epoch seconds, skew included)
    end: float
    limit: int
    used: int = 0        # processed + neighbour
    processed: int = 0
    rejected: int = 0
    neighbour: int = 0

    @property
    def reset(self) -> int:
        return math.ceil(self.end)

    def as_dict(self) -> dict:
        return {"bucket": self.bucket, "start": self.start, "end": self.end,
                "reset": self.reset, "limit": self.limit, "processed": self.processed,
                "rejected": self.rejected, "neighbour": self.neighbour}


FAULT_KINDS = ("hang", "reset", "status", "slow_body", "chunked", "large", "echo", "truncate")
_PRE_FAULTS = ("hang", "reset", "status")


@dataclasses.dataclass
class Fault:
    """An injected misbehaviour for matching requests.

    kind:
      hang      - answer nothing; with seconds=N answer normally after N s (else until the
                  client goes away or the simulator stops)
      reset     - close the connection with a TCP RST instead of answering
      status    - answer `status` (500, 503...) in Okta's error shape, request not processed
      slow_body - send the headers, then the body `chunk` bytes every `interval` s (body
                  replaced by a JSON document of exactly `size` bytes if given)
      chunked   - Transfer-Encoding: chunked in `chunks` pieces, `interval` s apart
      large     - a JSON body of `mib` MiB
      echo      - 200 with the request body echoed back
      truncate  - announce the full Content-Length (`size` bytes if given), send only `send`
                  bytes, then close
    path: fnmatch pattern on the path (None = every path); method: None = any.
    count: how many requests it applies to (None = until cleared).
    """

    kind: str
    path: Optional[str] = None
    method: Optional[str] = None
    count: Optional[int] = None
    seconds: Optional[float] = None
    status: int = 500
    retry_after: Optional[int] = None
    chunk: int = 1
    interval: float = 0.1
    size: Optional[int] = None
    chunks: int = 4
    mib: float = 1.0
    send: int = 10
    applied: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or fnmatch.fnmatchcase(path, self.path)


class _Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.processed = 0
        self.rate_limited = 0
        self.concurrency_limited = 0
        self.status_counts: dict = {}
        self.max_inflight = 0
        self.connections = 0
        self.closed_conn_requests: list = []
        self.handshake_failures = 0
        self.faults_applied: dict = {}
        self.log: list = []


class OktaSimulator:
    """An in-process Okta look-alike on 127.0.0.1 (HTTPS, optionally plain HTTP too).

    All public methods are thread-safe.
    """

    def __init__(self, cert_file: Optional[str] = None, key_file: Optional[str] = None, *,
                 plain_http: bool = False, host: str = "127.0.0.1", port: int = 0,
                 http_port: int = 0, window_seconds: float = 60.0,
                 limits: Optional[dict] = None, concurrency_limit: Optional[int] = None,
                 latency: float = 0.0, skew: float = 0.0, check_auth: bool = False,
                 ssws_tokens: tuple = (), issuer_host: Optional[str] = None,
                 record: bool = False, idle_timeout: float = 30.0,
                 record_responses: bool = False, record_headers: bool = False) -> None:
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together")
        self.window_seconds = float(window_seconds)
        self.limits = dict(DEFAULT_LIMITS)
        self.limits.update(limits or {})
        self.concurrency_limit = concurrency_limit
        # Cache-Control of the public documents (signing keys, discovery), as Okta sends it;
        # None = no Cache-Control at all. Tests change it to exercise a cache.
        self.document_cache_control: Optional[str] = "max-age=60, must-revalidate"
        self.latency = float(latency)
        self.skew = float(skew)
        self.check_auth = check_auth
        self.ssws_tokens = set(ssws_tokens)
        self.issuer_host = issuer_host
        self.record = record
        self.record_responses = record_responses
        # Request headers of every API request (name -> value, last wins), with the
        # X-Okta-Request-Id answered, so tests can follow a proxy's retries
        # (X-Okta-Retry-For / X-Okta-Retry-Count) back to the first attempt.
        self.record_headers = record_headers
        self._header_log: list = []
        self._sent: dict = {}          # X-Okta-Request-Id -> (status, head bytes, body bytes)
        self._revoked: set = set()     # jti values Okta treats as revoked
        self._denials: list = []       # (path glob, methods or None): 403 despite good scopes
        self.idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._windows: dict = {}      # bucket key -> [Window, ...] (last = current or stale)
        self._faults: list = []
        self._stats = _Stats()
        self._inflight = 0
        self._admitted = 0
        self._stop = threading.Event()
        self._conns: dict = {}         # id -> [socket, requests]
        self._threads: dict = {}       # handler thread -> its socket (to wake it on stop)
        self._next_conn = 0
        self._servers: list = []
        self._serve_threads: list = []
        self.port: Optional[int] = None
        self.http_port: Optional[int] = None
        self._host = host
        self._ssl_ctx = None
        if cert_file:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert_file, key_file)
            ctx.set_alpn_protocols(["http/1.1"])
            self._ssl_ctx = ctx
        self._want_plain = plain_http or cert_file is None
        self._ports = (port, http_port)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "OktaSimulator":
        if self._ssl_ctx is not None:
            srv = self._make_server(self._ports[0], self._ssl_ctx)
            self.port = srv.server_address[1]
        if self._want_plain:
            srv = self._make_server(self._ports[1] if self._ssl_ctx else self._ports[0], None)
            self.http_port = srv.server_address[1]
            if self._ssl_ctx is None:
                self.port = self.http_port
        for srv in self._servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                 name=f"okta-sim-serve-{srv.server_address[1]}", daemon=True)
            t.start()
            self._serve_threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._serve_threads:
            t.join(timeout)
        with self._lock:
            socks = list(self._threads.values())
            threads = list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._servers.clear()
        self._serve_threads.clear()

    def __enter__(self) -> "OktaSimulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def scheme(self) -> str:
        return "https" if self._ssl_ctx is not None else "http"

    def _make_server(self, port: int, ctx: Optional[ssl.SSLContext]) -> "_Server":
        srv = _Server((self._host, port), _Handler, self, ctx)
        self._servers.append(srv)
        return srv

    # -- clock --------------------------------------------------------------------------
    def now(self) -> float:
        """The simulator's wall clock (epoch seconds), skew included."""
        return time.time() + self.skew

    # -- configuration at run time --------------------------------------------------------
    def set_limit(self, bucket: str, limit: int) -> None:
        with self._lock:
            self.limits[bucket] = int(limit)

    def limit_of(self, bucket_key: str) -> int:
        name = bucket_key.split(":", 1)[0]
        return int(self.limits.get(bucket_key, self.limits.get(name, 600)))

    def add_fault(self, kind: str, path: Optional[str] = None, **params: Any) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {FAULT_KINDS}")
        fault = Fault(kind=kind, path=path, **params)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def revoke(self, jti: str) -> None:
        """Bearer tokens with this `jti` get 401 invalid_token, as after /oauth2/v1/revoke."""
        with self._lock:
            self._revoked.add(jti)

    def deny(self, path: str, methods: Optional[tuple] = None) -> None:
        """A 403 E0000006 (no insufficient_scope) for valid credentials on paths matching the
        glob: what Okta answers when the admin role is too weak, the user is not assigned to
        the app, or a policy denies it."""
        with self._lock:
            self._denials.append((path, tuple(m.upper() for m in methods) if methods else None))

    def clear_denials(self) -> None:
        with self._lock:
            self._denials.clear()
            self._revoked.clear()

    def _denied(self, method: str, path: str) -> bool:
        with self._lock:
            return any(fnmatch.fnmatchcase(path, glob) and (ms is None or method.upper() in ms)
                       for glob, ms in self._denials)

    def sent_response(self, request_id: str) -> Optional[tuple]:
        """(status, head bytes, body bytes) of the answer with this X-Okta-Request-Id, as
        written to the socket; needs record_responses=True."""
        with self._lock:
            return self._sent.get(request_id)

    def _record_sent(self, request_id: str, status: int, head: bytes, body: bytes) -> None:
        if not self.record_responses:
            return
        with self._lock:
            if len(self._sent) >= 10000:  # bounded: a benchmark may leave it on
                self._sent.pop(next(iter(self._sent)))
            self._sent[request_id] = (status, head, body)

    def _take_faults(self, method: str, path: str) -> tuple:
        pre = body = None
        with self._lock:
            for f in list(self._faults):
                is_pre = f.kind in _PRE_FAULTS
                if (pre if is_pre else body) is not None or not f.matches(method, path):
                    continue
                f.applied += 1
                if f.count is not None:
                    f.count -= 1
                    if f.count <= 0:
                        self._faults.remove(f)
                self._stats.faults_applied[f.kind] = self._stats.faults_applied.get(f.kind, 0) + 1
                if is_pre:
                    pre = f
                else:
                    body = f
        return pre, body

    # -- buckets --------------------------------------------------------------------------
    def _current_window(self, key: str, now: float) -> Window:
        """Okta opens a window with the first request after the previous one ended."""
        wins = self._windows.setdefault(key, [])
        if not wins or now >= wins[-1].end:
            wins.append(Window(key, now, now + self.window_seconds, self.limit_of(key)))
        win = wins[-1]
        win.limit = self.limit_of(key)
        return win

    def _admit(self, key: str, now: float) -> tuple:
        with self._lock:
            win = self._current_window(key, now)
            if win.used >= win.limit:
                win.rejected += 1
                return False, win.limit, 0, win.reset
            win.used += 1
            win.processed += 1
            return True, win.limit, win.limit - win.used, win.reset

    def consume(self, bucket_key: str, n: int) -> int:
        """A noisy neighbour spends up to n of the bucket's current window; returns how many."""
        with self._lock:
            win = self._current_window(bucket_key, self.now())
            take = max(0, min(n, win.limit - win.used))
            win.used += take
            win.neighbour += take
            return take

    def bucket_state(self, bucket_key: str) -> Optional[dict]:
        """The current window as the headers would show it, or None if none is open."""
        with self._lock:
            wins = self._windows.get(bucket_key)
            if not wins or self.now() >= wins[-1].end:
                return None
            w = wins[-1]
            return {"limit": w.limit, "remaining": max(0, w.limit - w.used), "reset": w.reset}

    def windows(self, bucket_key: str) -> list:
        """Every window of the bucket so far, oldest first (dicts)."""
        with self._lock:
            return [w.as_dict() for w in self._windows.get(bucket_key, [])]

    # -- statistics -------------------------------------------------------------------------
    def stats(self) -> dict:
        """A snapshot. `requests` counts every API request (not /__sim/ control calls);
        `status_counts` keys are statuses, 0 = no answer (hang abandoned, reset); `buckets`
        maps a bucket key to its windows (see Window.as_dict); `requests_per_connection`
        lists closed and open connections; `connections` counts accepted TCP connections."""
        with self._lock:
            s = self._stats
            per_conn = list(s.closed_conn_requests) + [c[1] for c in self._conns.values()]
            return {
                "requests": s.requests,
                "processed": s.processed,
                "rate_limited": s.rate_limited,
                "concurrency_limited": s.concurrency_limited,
                "too_many_requests": s.rate_limited + s.concurrency_limited,
                "status_counts": dict(s.status_counts),
                "max_inflight": s.max_inflight,
                "inflight": self._inflight,
                "connections": s.connections,
                "open_connections": len(self._conns),
                "requests_per_connection": per_conn,
                "handshake_failures": s.handshake_failures,
                "faults_applied": dict(s.faults_applied),
                "buckets": {k: [w.as_dict() for w in v] for k, v in self._windows.items()},
            }

    def request_headers_log(self) -> list:
        """[{"id", "method", "path", "status", "headers": {name: value}}, ...] in answer
        order, when constructed with record_headers=True (reset by reset_stats)."""
        with self._lock:
            return [dict(e) for e in self._header_log]

    def _record_request_headers(self, request_id: str, method: str, path: str, status: int,
                                headers: Any) -> None:
        if not self.record_headers:
            return
        with self._lock:
            if len(self._header_log) >= 100000:  # bounded: a benchmark may leave it on
                del self._header_log[:1000]
            self._header_log.append({"id": request_id, "method": method, "path": path,
                                     "status": status,
                                     "headers": {k: v for k, v in headers.items()}})

    def request_log(self) -> list:
        """[(sim time, method, path, status), ...] when constructed with record=True."""
        with self._lock:
            return list(self._stats.log)

    def reset_stats(self) -> None:
        """Forget statistics and windows (budgets start fresh)."""
        with self._lock:
            self._stats = _Stats()
            self._header_log.clear()
            for c in self._conns.values():
                c[1] = 0
            self._windows.clear()

    # -- connection and request bookkeeping (called by the handler) ---------------------------
    def _on_accept(self, thread: threading.Thread, sock: socket.socket) -> None:
        with self._lock:
            self._threads[thread] = sock
            self._stats.connections += 1

    def _on_thread_end(self) -> None:
        with self._lock:
            self._threads.pop(threading.current_thread(), None)

    def _on_connect(self, sock: socket.socket) -> int:
        """After the TLS handshake (if any): the connection starts carrying requests."""
        with self._lock:
            self._next_conn += 1
            cid = self._next_conn
            self._conns[cid] = [sock, 0]
            self._threads[threading.current_thread()] = sock
            return cid

    def _on_disconnect(self, cid: Optional[int]) -> None:
        with self._lock:
            if cid is not None:
                c = self._conns.pop(cid, None)
                if c is not None:
                    self._stats.closed_conn_requests.append(c[1])

    def _begin(self, cid: int) -> bool:
        """Counts a request in; returns False when the org's concurrency limit is hit."""
        with self._lock:
            self._stats.requests += 1
            c = self._conns.get(cid)
            if c is not None:
                c[1] += 1
            self._inflight += 1
            self._stats.max_inflight = max(self._stats.max_inflight, self._inflight)
            if self.concurrency_limit is not None and self._admitted >= self.concurrency_limit:
                return False
            self._admitted += 1
            return True

    def _end(self, admitted: bool, method: str, path: str, status: int) -> None:
        with self._lock:
            self._inflight -= 1
            if admitted:
                self._admitted -= 1
            s = self._stats
            s.status_counts[status] = s.status_counts.get(status, 0) + 1
            if self.record:
                s.log.append((self.now(), method, path, status))

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self._stats, field, getattr(self._stats, field) + 1)

    # -- authorization ------------------------------------------------------------------------
    def check_token(self, method: str, path: str, route: Route, authorization: Optional[str],
                    host: str) -> Optional[tuple]:
        """None if Okta would accept the token, else (status, extra headers, body)."""
        if not self.check_auth or not _needs_auth(route):
            return None
        host = self.issuer_host or (host[:-4] if host.endswith(":443") else host)
        org_iss = f"https://{host}"
        expected_iss = (org_iss if route.auth_server is None
                        else f"{org_iss}/oauth2/{route.auth_server}")
        scope = required_scope(method, route, path)

        def www(error: str, description: str) -> str:
            parts = [f'authorization_uri="{expected_iss}/v1/authorize"' if route.auth_server
                     else f'authorization_uri="{org_iss}/oauth2/v1/authorize"',
                     f'realm="{org_iss}"']
            if scope:
                parts.append(f'scope="{scope}"')
            parts += [f'error="{error}"', f'error_description="{description}"',
                      f'resource="{path}"']
            return "Bearer " + ", ".join(parts)

        def invalid(description: str) -> tuple:
            return (401, [("WWW-Authenticate", www("invalid_token", description))],
                    okta_error("E0000011", "Invalid token provided"))

        def forbidden() -> tuple:
            return 403, [], okta_error(
                "E0000006", "You do not have permission to perform the requested action")

        value = (authorization or "").strip()
        if value.startswith("SSWS "):
            if value[5:].strip() in self.ssws_tokens:
                return forbidden() if self._denied(method, path) else None
            return 401, [], okta_error("E0000011", "Invalid token provided")
        if not value.startswith("Bearer "):
            return invalid("The access token is invalid.")
        credential = value[7:].strip()
        claims = decode_jwt_claims(credential) if _JWS_COMPACT.fullmatch(credential) else None
        if claims is None:
            return invalid("The access token is invalid.")
        now = self.now()
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp <= now:
            return invalid("The token has expired.")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and nbf > now:
            return invalid("The token is not valid yet.")
        if claims.get("iss") != expected_iss:
            return invalid("The access token is invalid.")
        aud = claims.get("aud")
        if route.auth_server is None and aud is not None:
            auds = aud if isinstance(aud, list) else [aud]
            if org_iss not in auds:
                return invalid("The access token is invalid.")
        with self._lock:
            revoked = claims.get("jti") in self._revoked
        if revoked:
            return invalid("The access token is invalid.")
        if scope:
            scp = claims.get("scp", [])
            granted = set(scp if isinstance(scp, list) else str(scp).split())
            if not _scope_satisfied(scope, granted):
                return (403, [("WWW-Authenticate", www(
                    "insufficient_scope",
                    "The access token provided does not contain the required scopes."))],
                        okta_error("E0000006",
                                   "You do not have permission to perform the requested action"))
        if self._denied(method, path):
            return forbidden()
        return None

    # -- resources ----------------------------------------------------------------------------
    def serve(self, method: str, path: str, query: dict, route: Route, body: bytes,
              host: str) -> tuple:
        """The normal answer: (status, body object or None)."""
        if not route.exists:
            return 404, okta_error("E0000007", f"Not found: Resource not found: {path} (Path)")
        fam = route.family
        if fam == "discovery":
            return 200, {"issuer": f"https://{host}", "jwks_uri": f"https://{host}/oauth2/v1/keys"}
        if fam == "keys":
            return 200, {"keys": []}
        if fam == "token":
            if method != "POST":
                return 405, okta_error("E0000022",
                                       "The endpoint does not support the provided HTTP method")
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            h = self.issuer_host or (host[:-4] if host.endswith(":443") else host)
            iss = f"https://{h}" + (f"/oauth2/{route.auth_server}" if route.auth_server else "")
            scopes = form.get("scope", [""])[0].split()
            client = form.get("client_id", ["sim-client"])[0]
            now = int(self.now())
            claims = {"ver": 1, "jti": "AT." + _rand_id(), "iss": iss,
                      "aud": f"https://{h}" if route.auth_server is None else "api://default",
                      "iat": now, "exp": now + 3600, "cid": client, "scp": scopes, "sub": client}
            return 200, {"token_type": "Bearer", "expires_in": 3600,
                         "access_token": make_jwt(claims), "scope": " ".join(scopes)}
        if method == "DELETE":
            return 204, None
        seg = [s for s in path.split("/") if s]
        if method in ("GET", "HEAD") and len(seg) == 3:  # a collection
            n = min(int(query.get("limit", ["3"])[0] or 3), 200)
            return 200, [{"id": f"00u{_rand_id(17)}", "n": i} for i in range(n)]
        obj = {"id": seg[-1] if len(seg) > 3 else f"00u{_rand_id(17)}", "method": method,
               "path": path}
        if body:
            try:
                obj["received"] = json.loads(body)
            except ValueError:
                obj["received_bytes"] = len(body)
        return 200, obj


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # OktaSimulator.stop() wakes and joins the handler threads itself
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr: tuple, handler: type, sim: OktaSimulator,
                 ssl_ctx: Optional[ssl.SSLContext]) -> None:
        self.sim = sim
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self._thread_main, args=(request, client_address),
                             name="okta-sim-conn", daemon=True)
        self.sim._on_accept(t, request)
        t.start()

    def _thread_main(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            self.sim._on_thread_end()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that go away mid-request or fail the handshake are part of the tests.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ssl.SSLEOFError)):
            self.sim._count("handshake_failures")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "okta-sim"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        self.conn_id: Optional[int] = None
        sim = self.server.sim
        self.timeout = sim.idle_timeout
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.ssl_ctx is not None:
            # Handshake here, in the connection's own thread, never in the accept loop.
            sock.settimeout(10)
            self.request = self.server.ssl_ctx.wrap_socket(sock, server_side=True)
        self.conn_id = sim._on_connect(self.request)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            if isinstance(self.request, ssl.SSLSocket):
                # The server closes the raw socket it accepted; the TLS wrapper owns the fd.
                self.request.close()
            self.server.sim._on_disconnect(self.conn_id)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    # -- request body -------------------------------------------------------------------------
    def _read_body(self) -> tuple:
        """(body, was_chunked); raises ValueError on malformed framing."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ValueError("eof in chunked body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts), True
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = int(self.headers.get("Content-Length") or 0)
        if length > 512 * MIB:
            raise ValueError("body too large")
        return (self.rfile.read(length) if length else b""), False

    # -- response writing ---------------------------------------------------------------------
    def _head(self, status: int, headers: list, length: Optional[int]) -> bytes:
        sim = self.server.sim
        if self._pending is not None:
            # The request is done (slot freed, status counted) before the client can see the
            # answer, so a client that reacts at once never races the bookkeeping.
            admitted, self._pending = self._pending, None
            sim._end(admitted, self.command, self._req_path, status)
            sim._record_request_headers(self.request_id, self.command, self._req_path, status,
                                        self.headers)
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Date: {http_date(sim.now())}",
                 f"X-Okta-Request-Id: {self.request_id}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    _pending: Optional[bool] = None

    def _send(self, status: int, headers: list, obj: Any = None,
              raw: Optional[bytes] = None) -> None:
        if raw is None:
            raw = b"" if obj is None else json.dumps(obj, separators=(",", ":")).encode()
            if obj is not None:
                headers = [("Content-Type", "application/json")] + headers
        body = b"" if self.command == "HEAD" or status in (204, 304) else raw
        head = self._head(status, headers, None if status in (204, 304) else len(raw))
        self.server.sim._record_sent(self.request_id, status, head, body)
        self.wfile.write(head + body)

    # -- dispatch -------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        sim = self.server.sim
        self._pending = None
        self.request_id = _rand_id(27)
        method = self.command
        split = urllib.parse.urlsplit(self.path)
        path = split.path or "/"
        query = urllib.parse.parse_qs(split.query)
        if path.startswith("/__sim/"):
            self._control(path, query)
            return
        admitted = sim._begin(self.conn_id)
        self._pending, self._req_path = admitted, path
        try:
            self._handle(sim, method, path, query, admitted)
        finally:
            if self._pending is not None:  # no answer at all (hang, reset): status 0
                self._pending = None
                sim._end(admitted, method, path, 0)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def _handle(self, sim: OktaSimulator, method: str, path: str, query: dict,
                admitted: bool) -> int:
        try:
            body, was_chunked = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(400, [], okta_error("E0000003", "The request body was not well-formed."))
            return 400
        if not admitted:
            sim._count("concurrency_limited")
            now = sim.now()
            self._send(429, [("X-Rate-Limit-Limit", "0"), ("X-Rate-Limit-Remaining", "0"),
                             ("X-Rate-Limit-Reset", str(int(now) + CONCURRENCY_RESET_AHEAD_S))],
                       okta_error("E0000047",
                                  "API call exceeded rate limit due to too many requests."))
            return 429
        pre, body_fault = sim._take_faults(method, path)
        if pre is not None:
            if pre.kind == "hang":
                if not self._hang(sim, pre.seconds):
                    self.close_connection = True
                    return 0
            elif pre.kind == "reset":
                self._reset()
                return 0
            elif pre.kind == "status":
                headers = [("Retry-After", str(pre.retry_after))] if pre.retry_after else []
                summary = "Internal Server Error" if pre.status == 500 else \
                    self.responses.get(pre.status, ("Error",))[0]
                self._send(pre.status, headers, okta_error("E0000009", summary))
                return pre.status
        route = classify(method, path)
        rl_headers: list = []
        if route.bucket_key is not None:
            ok, limit, remaining, reset = sim._admit(route.bucket_key, sim.now())
            rl_headers = [("X-Rate-Limit-Limit", str(limit)),
                          ("X-Rate-Limit-Remaining", str(remaining)),
                          ("X-Rate-Limit-Reset", str(reset))]
            if not ok:
                sim._count("rate_limited")
                self._send(429, rl_headers, okta_error(
                    "E0000047", "API call exceeded rate limit due to too many requests."))
                return 429
        host = self.headers.get("Host") or "acme.okta.com"
        denied = sim.check_token(method, path, route, self.headers.get("Authorization"), host)
        if sim.latency > 0 and sim._stop.wait(sim.latency):
            self.close_connection = True
            return 0
        if denied is not None:
            st, extra, obj = denied
            self._send(st, rl_headers + extra, obj)
            return st
        sim._count("processed")
        status, obj = sim.serve(method, path, query, route, body, host)
        if route.family in ("keys", "discovery") and sim.document_cache_control is not None:
            rl_headers = rl_headers + [("Cache-Control", sim.document_cache_control)]
        if body_fault is None or status >= 300:
            self._send(status, rl_headers, obj)
            return status
        return self._body_fault(sim, body_fault, status, rl_headers, obj, body, was_chunked)

    def _body_fault(self, sim: OktaSimulator, f: Fault, status: int, headers: list, obj: Any,
                    req_body: bytes, req_chunked: bool) -> int:
        ctype = [("Content-Type", "application/json")]
        raw = json.dumps(obj, separators=(",", ":")).encode() if obj is not None else b""
        if f.kind == "echo":
            ct = self.headers.get("Content-Type") or "application/octet-stream"
            extra = [("Content-Type", ct), ("X-Sim-Body-Length", str(len(req_body))),
                     ("X-Sim-Body-Sha256", hashlib.sha256(req_body).hexdigest()),
                     ("X-Sim-Request-Chunked", "1" if req_chunked else "0")]
            self._send(200, headers + extra, raw=req_body)
            return 200
        if f.kind == "large":
            size = int(f.mib * MIB)
            self.wfile.write(self._head(status, ctype + headers, size))
            self._write_padded_json(size)
            return status
        if f.kind == "slow_body":
            if f.size:
                raw = _padded_json(f.size)
            self.wfile.write(self._head(status, ctype + headers, len(raw)))
            for i in range(0, len(raw), max(1, f.chunk)):
                if sim._stop.wait(f.interval):
                    self.close_connection = True
                    return status
                self.wfile.write(raw[i:i + max(1, f.chunk)])
            return status
        if f.kind == "chunked":
            head = self._head(status, ctype + headers + [("Transfer-Encoding", "chunked")], None)
            self.wfile.write(head)
            n = max(1, f.chunks)
            step = max(1, math.ceil(len(raw) / n))
            for i in range(0, len(raw), step):
                piece = raw[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                if f.interval and sim._stop.wait(f.interval):
                    self.close_connection = True
                    return status
            self.wfile.write(b"0\r\n\r\n")
            return status
        if f.kind == "truncate":
            if f.size:
                raw = _padded_json(f.size)
            self.wfile.write(self._head(status, ctype + headers, len(raw)) + raw[:f.send])
            self.close_connection = True
            self._close_now(rst=False)
            return status
        raise AssertionError(f.kind)

    def _write_padded_json(self, size: int) -> None:
        prefix, suffix = b'{"padding":"', b'"}'
        fill = size - len(prefix) - len(suffix)
        self.wfile.write(prefix)
        block = b"x" * (256 * 1024)
        while fill > 0:
            n = min(fill, len(block))
            self.wfile.write(block[:n])
            fill -= n
        self.wfile.write(suffix)

    def _hang(self, sim: OktaSimulator, seconds: Optional[float]) -> bool:
        """Waits; True = go on answering, False = the client left or the simulator stops."""
        deadline = time.monotonic() + (seconds if seconds is not None else 600.0)
        sock = self.request
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return seconds is not None
            if sim._stop.is_set():
                return False
            try:
                readable, _, _ = select.select([sock], [], [], min(left, 0.05))
            except (OSError, ValueError):
                return False
            if readable and self._peer_gone(sock):
                return False

    @staticmethod
    def _peer_gone(sock: socket.socket) -> bool:
        try:
            if isinstance(sock, ssl.SSLSocket):
                # No MSG_PEEK on TLS: any readable data during a hang ends the hang.
                sock.settimeout(0.05)
                sock.recv(1)
                return True
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _reset(self) -> None:
        self.close_connection = True
        self._close_now(rst=True)

    def _close_now(self, rst: bool) -> None:
        sock = self.request
        try:
            if rst:
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.rfile.close()  # drops the makefile() reference so close() really closes
        except OSError:
            pass
        sock.close()

    # -- control API for out-of-process use ------------------------------------------------------
    def _control(self, path: str, query: dict) -> None:
        sim = self.server.sim
        try:
            body, _ = self._read_body()
            arg = json.loads(body) if body else {}
        except ValueError:
            self._send(400, [], {"error": "bad json"})
            return
        cmd, method = path[len("/__sim/"):], self.command
        try:
            if cmd == "stats" and method == "GET":
                self._send(200, [], sim.stats())
            elif cmd == "log" and method == "GET":
                self._send(200, [], sim.request_log())
            elif cmd == "reset-stats" and method == "POST":
                sim.reset_stats()
                self._send(200, [], {"ok": True})
            elif cmd == "fault" and method == "POST":
                sim.add_fault(arg.pop("kind"), arg.pop("path", None), **arg)
                self._send(200, [], {"ok": True})
            elif cmd == "fault" and method == "DELETE":
                sim.clear_faults()
                self._send(200, [], {"ok": True})
            elif cmd == "consume" and method == "POST":
                self._send(200, [], {"consumed": sim.consume(arg["bucket"], int(arg["n"]))})
            elif cmd == "config" and method == "POST":
                for k, v in arg.get("limits", {}).items():
                    sim.set_limit(k, v)
                for k in ("skew", "latency", "concurrency_limit", "window_seconds", "check_auth"):
                    if k in arg:
                        setattr(sim, k, arg[k])
                self._send(200, [], {"ok": True})
            else:
                self._send(404, [], {"error": f"unknown control {method} {cmd}"})
        except (KeyError, TypeError, ValueError) as e:
            self._send(400, [], {"error": str(e)})


def _padded_json(size: int) -> bytes:
    prefix, suffix = b'{"padding":"', b'"}'
    return prefix + b"x" * max(0, size - len(prefix) - len(suffix)) + suffix


# ------------------------------------------------------------------------------------------
# Command line

def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--plain-http", action="store_true", help="also listen in plain HTTP")
    ap.add_argument("--window", type=float, default=60.0, help="window length in seconds")
    ap.add_argument("--limit", action="append", default=[], metavar="BUCKET=N")
    ap.add_argument("--concurrency", type=int, default=None)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--skew", type=float, default=0.0)
    ap.add_argument("--check-auth", action="store_true")
    ap.add_argument("--ssws", action="append", default=[], metavar="TOKEN")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--stats-file", help="write the final statistics (JSON) here on exit")
    args = ap.parse_args(argv)
    limits = {}
    for item in args.limit:
        name, _, n = item.partition("=")
        if not n.isdigit():
            ap.error(f"--limit wants BUCKET=N, got {item!r}")
        limits[name] = int(n)
    # The stop signals are blocked before any thread starts (threads inherit the mask) and
    # taken by sigwait: a handler that set a threading.Event could deadlock on that Event's
    # own lock, held by the main thread inside wait() when the signal lands.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sim = OktaSimulator(args.cert, args.key, plain_http=args.plain_http, host=args.host,
                        port=args.port, http_port=args.http_port, window_seconds=args.window,
                        limits=limits, concurrency_limit=args.concurrency, latency=args.latency,
                        skew=args.skew, check_auth=args.check_auth, ssws_tokens=tuple(args.ssws),
                        record=args.record)
    sim.start()
    print(json.dumps({"port": sim.port, "http_port": sim.http_port, "scheme": sim.scheme}),
          flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    sim.stop()
    stats = sim.stats()
    if args.stats_file:
        with open(args.stats_file, "w", encoding="utf-8") as f:
            json.dump(stats, f)
    print(json.dumps({"stats": stats}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
