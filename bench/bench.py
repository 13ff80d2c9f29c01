#!/usr/bin/env python3
"""Benchmark orchestrator behind bench/run (scenarios of issue 7).

Every server binds 127.0.0.1, every load is bounded in requests and seconds, every process
started here is recorded (PID file for bench/run's trap) and stopped by PID at the end.
Results go to bench/results/<scenario>.json: the raw runs of every repetition, the medians,
and ratios against the sidecar measured in the same run. Nothing here invents a number: a peer
that cannot run is listed under "skipped" with the reason.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "support"))
import test_pki  # noqa: E402

OKTA_HOST = "acme.okta.com"
BODY = json.dumps([{"id": "00u1a2b3c4d5e6f7g8h9", "status": "ACTIVE",
                    "created": "2024-01-01T00:00:00.000Z",
                    "profile": {"firstName": "Ada", "lastName": "Lovelace",
                                "email": "ada@example.com", "login": "ada@example.com"},
                    "_links": {"self": {"href": "https://acme.okta.com/api/v1/users/00u1"}}}])
# The forwarding scenarios use an Okta-classified path (`GET /api/v1/users/{id}`) whose upstream
# sends Okta's rate-limit headers, so the sidecar does its whole per-request work: classify,
# admit against a learned bucket, read the headers back (issue 13's yardstick).
API_PATH = "/api/v1/users/00u1a2b3c4d5e6f7g8h9"
# And every request carries an API token, as every Okta API call does: the sidecar reads it on
# each request (fingerprint, caller key). Until stop 18 the bench sent none and missed that cost.
OKTA_TOKEN = "SSWS 00BenchTokenOfOktasShape_4Kq9ZxT2mWv8Lr3"
# The simulator's `users` bucket, for the rate-limit scenarios.
SIM_PATH = "/api/v1/users"
# Far enough ahead for any run, within the sidecar's reset horizon: Remaining never drops, so
# the bucket admits at once, as a lightly used Okta bucket does.
RESET_AHEAD_S = 1800


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# Processes

class Procs:
    """Every process this run starts; stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, pid_file: str) -> None:
        self.pid_file = pid_file
        self.procs: list = []

    def start(self, args: list, *, log_file: Optional[str] = None, stdin=subprocess.DEVNULL,
              stdout=None, env: Optional[dict] = None, cwd: Optional[str] = None
              ) -> subprocess.Popen:
        out = stdout if stdout is not None else (
            open(log_file, "ab") if log_file else subprocess.DEVNULL)
        p = subprocess.Popen(args, stdin=stdin, stdout=out,
                             stderr=open(log_file, "ab") if log_file else subprocess.DEVNULL,
                             env=env, cwd=cwd)
        self.procs.append(p)
        with open(self.pid_file, "a", encoding="ascii") as f:
            f.write(f"{p.pid}\n")
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
            except ProcessLookupError:
                pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.procs)):
            self.stop(p)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, proc: Optional[subprocess.Popen] = None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited ({proc.returncode}) before "
                               f"listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _children() -> dict:
    kids: dict = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", encoding="ascii") as f:
                    st = f.read()
                ppid = int(st[st.rindex(")") + 2:].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError):
                pass
    return kids


def tree(pid: int) -> list:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    return sum(_status_kib(p, "VmRSS") for p in tree(pid))


def hwm_kib(pid: int) -> int:
    return sum(_status_kib(p, "VmHWM") for p in tree(pid))


def cpu_split(pid: int) -> tuple:
    """(user, kernel) CPU seconds of the process tree."""
    tick = os.sysconf("SC_CLK_TCK")
    user = kernel = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat", encoding="ascii") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            user += int(fields[11])
            kernel += int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return user / tick, kernel / tick


def cpu_s(pid: int) -> float:
    return sum(cpu_split(pid))


def per_req_split(c0: tuple, c1: tuple, requests: int) -> dict:
    """CPU µs per request, split: where a proxy's time goes (its own code or the kernel's)."""
    if not requests:
        return {"user_cpu_us_per_req": None, "kernel_cpu_us_per_req": None}
    return {"user_cpu_us_per_req": (c1[0] - c0[0]) / requests * 1e6,
            "kernel_cpu_us_per_req": (c1[1] - c0[1]) / requests * 1e6}


def median(xs: list) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def machine_info() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg_1m_5m_15m": list(os.getloadavg())}


def tool_version(args: list) -> str:
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


# ------------------------------------------------------------------------------------------
# The bench environment: PKI, upstream nginx, sidecar launcher

class Env:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = args.workdir
        os.makedirs(self.work, exist_ok=True)
        self.procs = Procs(os.path.join(self.work, "pids"))
        self.sidecar_bin = args.sidecar
        self.loadgen_bin = args.loadgen
        self.pki = test_pki.make_pki(os.path.join(self.work, "pki"),
                                     names=(OKTA_HOST, "127.0.0.1", "localhost"))
        # Squid drops root for the 'proxy' user: it gets its own copy of the CA key (the
        # sidecar rightly refuses a key file that others can read).
        os.chmod(self.work, 0o755)
        os.chmod(self.pki.directory, 0o755)
        self.squid_ca_key = os.path.join(self.pki.directory, "squid-ca.key")
        shutil.copyfile(self.pki.ca_key, self.squid_ca_key)
        os.chmod(self.squid_ca_key, 0o600)
        subprocess.run(["chown", "proxy", self.squid_ca_key], check=False, capture_output=True)
        self.upstream: Optional[subprocess.Popen] = None
        self.up_http = self.up_https = 0

    def path(self, *p: str) -> str:
        return os.path.join(self.work, *p)

    # -- upstream: nginx serving a small Okta-like JSON body, plain and TLS, keep-alive -------
    def start_upstream(self) -> None:
        self.up_http, self.up_https = free_port(), free_port()
        d = self.path("upstream")
        os.makedirs(d, exist_ok=True)
        conf = f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server {{
    listen 127.0.0.1:{self.up_http} backlog=4096;
    listen 127.0.0.1:{self.up_https} ssl backlog=4096;
    ssl_certificate {self.pki.server_cert};
    ssl_certificate_key {self.pki.server_key};
    location / {{
      default_type application/json;
      add_header X-Rate-Limit-Limit 600 always;
      add_header X-Rate-Limit-Remaining 599 always;
      add_header X-Rate-Limit-Reset {int(time.time()) + RESET_AHEAD_S} always;
      return 200 '{BODY}';
    }}
  }}
}}
"""
        with open(f"{d}/nginx.conf", "w", encoding="ascii") as f:
            f.write(conf)
        os.makedirs(f"{d}/tmp", exist_ok=True)
        self.upstream = self.procs.start(["nginx", "-c", f"{d}/nginx.conf", "-p", d],
                                         log_file=f"{d}/stderr.log")
        wait_port(self.up_http, proc=self.upstream)
        wait_port(self.up_https, proc=self.upstream)

    # -- the sidecar ----------------------------------------------------------------------------
    def start_sidecar(self, name: str, threads: int, *, resolve: dict,
                      extra: Optional[dict] = None, allowed_ports: tuple = ()
                      ) -> tuple:
        d = self.path("sidecar-" + name)
        os.makedirs(d, exist_ok=True)
        port, admin = free_port(), free_port()
        cfg: dict = {
            "listen": f"127.0.0.1:{port}", "admin_listen": f"127.0.0.1:{admin}",
            "state_dir": d, "threads": threads,
            "ca": {"cert_file": self.pki.ca_cert, "key_file": self.pki.ca_key},
            "upstream": {"trust_file": self.pki.ca_cert, "resolve": resolve},
            # The plain scenarios talk to the upstream over http://, which the sidecar refuses
            # for Okta hosts unless told (a local test double is the reason the key exists).
            "access": {"allowed_ports": sorted({443, 80, *allowed_ports}), "allow_cleartext": True},
            # The scale scenario holds 10,000 client connections (the default cap is 4,096).
            "client": {"max_connections": 30000},
            # Identical concurrent GETs would share one upstream request (issue 15): off, so
            # every client request costs an upstream request, as it does through the peers, and
            # the queued and absorption scenarios measure queueing rather than coalescing.
            "rate_limit": {"coalesce": False},
            # warn: no access log line per request, as the peers run with access logs off
            "log": {"level": self.args.sidecar_log_level, "format": "json"},
        }
        for k, v in (extra or {}).items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
        with open(f"{d}/config.json", "w", encoding="ascii") as f:
            json.dump(cfg, f, indent=1)
        logf = f"{d}/sidecar.log"
        p = self.procs.start([self.sidecar_bin, "--config", f"{d}/config.json"], log_file=logf)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        end = time.time() + 20
        while time.time() < end:
            if p.poll() is not None:
                raise RuntimeError(f"okta-sidecar exited ({p.returncode}); log {logf}")
            try:
                with opener.open(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                    if r.status == 200:
                        wait_port(port, proc=p)
                        return p, port, admin
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"okta-sidecar did not become ready; log {logf}")

    # -- load tools -----------------------------------------------------------------------------
    def wrk(self, url: str, *, connections: int, seconds: float, max_requests: int,
            absolute: Optional[str] = None) -> dict:
        env = dict(os.environ, WRK_MAX_REQUESTS=str(max_requests), WRK_TARGET=absolute or "",
                   WRK_AUTHZ=OKTA_TOKEN)
        p = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
                            "-s", os.path.join(HERE, "wrk", "bounded.lua"), url],
                           capture_output=True, text=True, env=env, timeout=seconds + 30)
        for line in reversed(p.stdout.splitlines()):
            if line.startswith("{"):
                r = json.loads(line)
                # wrk keeps its clock running to -d after the Lua cap stops a thread, so a
                # capped run's rate would be understated: report none rather than a wrong one.
                capped = max_requests > 0 and r["requests"] >= max_requests
                r["rps"] = (r["requests"] / (r["duration_us"] / 1e6)
                            if r["duration_us"] and not capped else None)
                r["capped"] = capped
                r["errors_total"] = sum(r["errors"].values())
                return r
        raise RuntimeError(f"wrk printed no result: {p.stdout[-500:]} {p.stderr[-500:]}")

    def loadgen(self, args: list, timeout: float = 120) -> dict:
        p = subprocess.run([self.loadgen_bin, *args], capture_output=True, text=True,
                           timeout=timeout)
        for line in reversed(p.stdout.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"okta-loadgen printed no result ({p.returncode}): {p.stderr[-800:]}")


# ------------------------------------------------------------------------------------------
# Peers (each returns (process, port) or raises with a reason)

def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None


def start_nginx_proxy(env: Env, name: str, workers: int) -> tuple:
    port = free_port()
    d = env.path(name)
    os.makedirs(f"{d}/tmp", exist_ok=True)
    conf = f"""
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  keepalive_requests 10000000;
  upstream okta {{ server 127.0.0.1:{env.up_http}; keepalive 64; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://okta;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering on;
    }}
  }}
}}
"""
    with open(f"{d}/nginx.conf", "w", encoding="ascii") as f:
        f.write(conf)
    p = env.procs.start(["nginx", "-c", f"{d}/nginx.conf", "-p", d], log_file=f"{d}/stderr.log")
    wait_port(port, proc=p)
    return p, port


def start_haproxy(env: Env, name: str, threads: int) -> tuple:
    port = free_port()
    d = env.path(name)
    os.makedirs(d, exist_ok=True)
    conf = f"""
global
  nbthread {threads}
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
  option http-keep-alive
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  server up 127.0.0.1:{env.up_http}
"""
    with open(f"{d}/haproxy.cfg", "w", encoding="ascii") as f:
        f.write(conf)
    p = env.procs.start(["haproxy", "-f", f"{d}/haproxy.cfg", "-db"], log_file=f"{d}/stderr.log")
    wait_port(port, proc=p)
    return p, port


def _squid_common(env: Env, d: str, port_line: str) -> str:
    with open(f"{d}/hosts", "w", encoding="ascii") as f:
        f.write(f"127.0.0.1 {OKTA_HOST} localhost\n")
    return f"""
{port_line}
workers 1
acl localnet src 127.0.0.1/32
acl Safe_ports port 1-65535
http_access allow localnet
http_access deny all
cache deny all
cache_mem 8 MB
access_log none
cache_store_log none
cache_log {d}/cache.log
pid_filename {d}/squid.pid
coredump_dir {d}
hosts_file {d}/hosts
dns_nameservers 127.0.0.1
client_persistent_connections on
server_persistent_connections on
forwarded_for delete
via off
max_filedescriptors 65536
"""


def _run_squid(env: Env, d: str, port: int, port_line: str) -> tuple:
    with open(f"{d}/squid.conf", "w", encoding="ascii") as f:
        f.write(_squid_common(env, d, port_line))
    p = env.procs.start(["squid", "-N", "-f", f"{d}/squid.conf"], log_file=f"{d}/stderr.log")
    wait_port(port, 30, proc=p)
    return p, port


def start_squid(env: Env, name: str) -> tuple:
    port = free_port()
    d = env.path(name)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o777)
    return _run_squid(env, d, port, f"http_port 127.0.0.1:{port}")


def start_squid_bump(env: Env, name: str) -> tuple:
    port = free_port()
    d = env.path(name)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o777)
    certgen = next((c for c in ("/usr/lib/squid/security_file_certgen",
                                "/usr/lib/squid/ssl_crtd") if os.path.exists(c)), None)
    if certgen is None:
        raise RuntimeError("squid-openssl's security_file_certgen is missing")
    db = f"{d}/ssl_db"
    shutil.rmtree(db, ignore_errors=True)
    subprocess.run([certgen, "-c", "-s", db, "-M", "16MB"], check=True, capture_output=True)
    subprocess.run(["chown", "-R", "proxy:proxy", db], check=False)
    port_line = (f"http_port 127.0.0.1:{port} ssl-bump generate-host-certificates=on "
                 f"dynamic_cert_mem_cache_size=16MB tls-cert={env.pki.ca_cert} "
                 f"tls-key={env.squid_ca_key}\n"
                 f"sslcrtd_program {certgen} -s {db} -M 16MB\n"
                 f"sslcrtd_children 2 startup=1 idle=1\n"
                 f"ssl_bump bump all\n"
                 f"tls_outgoing_options cafile={env.pki.ca_cert}\n")
    return _run_squid(env, d, port, port_line)


def start_tinyproxy(env: Env, name: str) -> tuple:
    port = free_port()
    d = env.path(name)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o777)
    conf = f"""
Port {port}
Listen 127.0.0.1
Timeout 60
MaxClients 2000
LogLevel Error
LogFile "{d}/tinyproxy.log"
PidFile "{d}/tinyproxy.pid"
Allow 127.0.0.1
DisableViaHeader Yes
ConnectPort {env.up_https}
"""
    with open(f"{d}/tinyproxy.conf", "w", encoding="ascii") as f:
        f.write(conf)
    p = env.procs.start(["tinyproxy", "-d", "-c", f"{d}/tinyproxy.conf"],
                        log_file=f"{d}/stderr.log")
    wait_port(port, proc=p)
    return p, port


def start_mitmproxy(env: Env, name: str) -> tuple:
    port = free_port()
    d = env.path(name)
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/mitmproxy-ca.pem", "w", encoding="ascii") as f:
        f.write(open(env.pki.ca_key, encoding="ascii").read())
        f.write(open(env.pki.ca_cert, encoding="ascii").read())
    p = env.procs.start(["mitmdump", "--listen-host", "127.0.0.1", "--listen-port", str(port),
                         "--set", f"confdir={d}", "--set",
                         f"ssl_verify_upstream_trusted_ca={env.pki.ca_cert}",
                         "--set", "http2=false", "-q"], log_file=f"{d}/stderr.log")
    wait_port(port, 60, proc=p)
    return p, port


def start_peer(env: Env, skipped: dict, name: str, fn: Callable, *a: Any) -> Optional[tuple]:
    try:
        return fn(env, name, *a)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        skipped[name] = str(e)[:300]
        log(f"peer {name} skipped: {e}")
        return None


# ------------------------------------------------------------------------------------------
# Scenario 1: plain HTTP forwarding overhead (wrk)

def scenario_plain(env: Env, reps: int) -> dict:
    env.start_upstream()
    skipped: dict = {}
    up_url = f"http://127.0.0.1:{env.up_http}{API_PATH}"
    okta_url = f"http://{OKTA_HOST}:{env.up_http}{API_PATH}"
    resolve = {f"{OKTA_HOST}:{env.up_http}": f"127.0.0.1:{env.up_http}"}
    variants: dict = {}  # name -> (pid or None, wrk url, absolute target, threads)
    variants["direct"] = (None, up_url, None, 0)
    for threads in (1, 2):
        p, port, _ = env.start_sidecar(f"plain-{threads}t", threads, resolve=resolve,
                                       allowed_ports=(env.up_http,))
        variants[f"okta-sidecar {threads}t"] = (p, f"http://127.0.0.1:{port}/", okta_url, threads)
    if have("nginx"):
        for w in (1, 2):
            r = start_peer(env, skipped, f"nginx-{w}w", start_nginx_proxy, w)
            if r:
                variants[f"nginx {w}w"] = (r[0], f"http://127.0.0.1:{r[1]}{API_PATH}", None, w)
    else:
        skipped["nginx"] = "not installed"
    if have("haproxy"):
        for t in (1, 2):
            r = start_peer(env, skipped, f"haproxy-{t}t", start_haproxy, t)
            if r:
                variants[f"haproxy {t}t"] = (r[0], f"http://127.0.0.1:{r[1]}{API_PATH}", None, t)
    else:
        skipped["haproxy"] = "not installed"
    if have("squid"):
        r = start_peer(env, skipped, "squid", start_squid)
        if r:
            variants["squid 1w"] = (r[0], f"http://127.0.0.1:{r[1]}/", up_url, 1)
    else:
        skipped["squid"] = "not installed"
    if have("tinyproxy"):
        r = start_peer(env, skipped, "tinyproxy", start_tinyproxy)
        if r:
            variants["tinyproxy"] = (r[0], f"http://127.0.0.1:{r[1]}/", up_url, 0)
    else:
        skipped["tinyproxy"] = "not installed"

    secs, conns, cap = env.args.seconds, 32, 2_000_000
    runs: dict = {k: [] for k in variants}
    for rep in range(reps):
        for name, (proc, url, absolute, _) in variants.items():
            try:
                # warm-up: pools, caches, lazy allocations
                env.wrk(url, connections=4, seconds=1, max_requests=2000, absolute=absolute)
                pid = proc.pid if proc else None
                up_c0 = cpu_s(env.upstream.pid)
                c0 = cpu_split(pid) if pid else (0.0, 0.0)
                thr = env.wrk(url, connections=conns, seconds=secs, max_requests=cap,
                              absolute=absolute)
                c1 = cpu_split(pid) if pid else (0.0, 0.0)
                up_c1 = cpu_s(env.upstream.pid)
                lat = env.wrk(url, connections=1, seconds=min(secs, 3), max_requests=5000,
                              absolute=absolute)
                ok = thr["requests"] - thr["errors"]["status"]
                runs[name].append({
                    "rep": rep, "rps": thr["rps"], "requests": thr["requests"],
                    # wrk counts a connection the proxy closes after a response as a read
                    # error (tinyproxy does no client keep-alive); the request itself succeeded.
                    "errors": thr["errors_total"] - thr["errors"]["read"],
                    "closed_connections": thr["errors"]["read"],
                    "p50_us_c32": thr["latency_us"]["p50"], "p99_us_c32": thr["latency_us"]["p99"],
                    "p50_us_c1": lat["latency_us"]["p50"], "p99_us_c1": lat["latency_us"]["p99"],
                    "errors_c1": lat["errors_total"],
                    "cpu_us_per_req": (sum(c1) - sum(c0)) / ok * 1e6 if pid and ok else None,
                    **per_req_split(c0, c1, ok if pid else 0),
                    "upstream_cpu_us_per_req": (up_c1 - up_c0) / ok * 1e6 if ok else None,
                    "peak_rss_kib": hwm_kib(pid) if pid else None})
                log(f"s1 rep {rep} {name}: {thr['rps'] or 0:.0f} req/s, p50 c1 "
                    f"{lat['latency_us']['p50']} us, errors {thr['errors_total']}")
            except (RuntimeError, subprocess.TimeoutExpired, KeyError) as e:
                log(f"s1 rep {rep} {name} failed: {e}")
                runs[name].append({"rep": rep, "failed": str(e)[:300]})

    summary: dict = {}
    for name, rs in runs.items():
        good = [r for r in rs if "failed" not in r]
        summary[name] = {k: median([r[k] for r in good]) for k in (
            "rps", "p50_us_c1", "p99_us_c1", "p50_us_c32", "p99_us_c32", "cpu_us_per_req",
            "user_cpu_us_per_req", "kernel_cpu_us_per_req", "peak_rss_kib", "errors",
            "closed_connections")} if good else {"failed": True}
        summary[name]["threads"] = variants[name][3]
    direct = summary.get("direct", {})
    for name, s in summary.items():
        if name != "direct" and s.get("p50_us_c1") is not None and direct.get("p50_us_c1"):
            s["added_p50_us"] = s["p50_us_c1"] - direct["p50_us_c1"]
            s["added_p99_us"] = s["p99_us_c1"] - direct["p99_us_c1"]
    ratios = ratios_vs(summary, {"1t": "okta-sidecar 1t", "2t": "okta-sidecar 2t"},
                       ("rps", "added_p50_us", "added_p99_us", "cpu_us_per_req", "peak_rss_kib"))
    return {"scenario": "plain", "title": "Plain HTTP forwarding overhead",
            "method": {"tool": tool_version(["wrk", "-v"]), "throughput": f"wrk -t1 -c{conns} "
                       f"-d{secs}s (<= {cap} requests)", "latency": "wrk -t1 -c1 -d3s (<= 5000 "
                       "requests); added latency = proxy p50/p99 minus direct p50/p99 at c=1",
                       "cpu": "utime+stime of the proxy's process tree during the throughput run"
                       " / requests (user + kernel: utime and stime apart)", "rss": "VmHWM summed over the proxy's process tree",
                       "upstream": f"nginx 1 worker, return 200 with a {len(BODY)}-byte JSON body",
                       "requests": f"GET {API_PATH} with an SSWS API token (Authorization)",
                       "note": "everything shares 2 cores: wrk, the proxy and the upstream"},
            "versions": {"nginx": tool_version(["nginx", "-v"]),
                         "haproxy": tool_version(["haproxy", "-v"]),
                         "squid": tool_version(["squid", "-v"]),
                         "tinyproxy": tool_version(["tinyproxy", "-v"])},
            "runs": runs, "summary": summary, "ratios": ratios, "skipped": skipped}


def ratios_vs(summary: dict, sidecars: dict, keys: tuple) -> dict:
    """value(peer) / value(sidecar) per key; the sidecar with the peer's thread count."""
    out: dict = {}
    for name, s in summary.items():
        if name.startswith(("okta-sidecar", "direct")) or s.get("failed"):
            continue
        t = s.get("threads") or 1
        ref = summary.get(sidecars.get(f"{t}t", "okta-sidecar 1t"), {})
        r = {"vs": sidecars.get(f"{t}t", "okta-sidecar 1t")}
        for k in keys:
            a, b = ref.get(k), s.get(k)
            r[f"sidecar_over_peer_{k}"] = (a / b) if a is not None and b not in (None, 0) else None
        out[name] = r
    return out


# ------------------------------------------------------------------------------------------
# Scenario 2: intercepted HTTPS (CONNECT + TLS) with okta-loadgen

def scenario_https(env: Env, reps: int) -> dict:
    if env.upstream is None:
        env.start_upstream()
    skipped: dict = {}
    ca = env.pki.ca_cert
    variants: dict = {}  # name -> (proc, loadgen args)
    variants["direct TLS"] = (None, ["--target", f"https://{OKTA_HOST}:{env.up_https}{API_PATH}",
                                     "--connect-to", f"127.0.0.1:{env.up_https}"])
    for threads in (1, 2):
        p, port, _ = env.start_sidecar(f"https-{threads}t", threads, resolve={
            f"{OKTA_HOST}:443": f"127.0.0.1:{env.up_https}"})
        variants[f"okta-sidecar {threads}t"] = (p, ["--target", f"https://{OKTA_HOST}{API_PATH}",
                                                    "--proxy", f"127.0.0.1:{port}"])
    if have("squid") and os.path.exists("/usr/lib/squid/security_file_certgen"):
        r = start_peer(env, skipped, "squid-bump", start_squid_bump)
        if r:
            variants["squid ssl-bump"] = (r[0], [
                "--target", f"https://{OKTA_HOST}:{env.up_https}{API_PATH}",
                "--proxy", f"127.0.0.1:{r[1]}"])
    else:
        skipped["squid ssl-bump"] = "squid-openssl (security_file_certgen) not installed"
    if have("mitmdump"):
        r = start_peer(env, skipped, "mitmproxy", start_mitmproxy)
        if r:
            variants["mitmproxy"] = (r[0], ["--target", f"https://localhost:{env.up_https}"
                                            f"{API_PATH}", "--proxy", f"127.0.0.1:{r[1]}"])
    else:
        skipped["mitmproxy"] = "not installed"

    secs = env.args.seconds
    runs: dict = {k: [] for k in variants}
    for rep in range(reps):
        for name, (proc, base) in variants.items():
            base = [*base, "--ca", ca, "--header", f"Authorization: {OKTA_TOKEN}"]
            try:
                env.loadgen([*base, "--connections", "4", "--requests", "500", "--duration", "3"])
                pid = proc.pid if proc else None
                c0 = cpu_split(pid) if pid else (0.0, 0.0)
                thr = env.loadgen([*base, "--connections", "16", "--requests", "200000",
                                   "--duration", str(secs)])
                c1 = cpu_split(pid) if pid else (0.0, 0.0)
                lat = env.loadgen([*base, "--connections", "1", "--requests", "3000",
                                   "--duration", "3"])
                new = env.loadgen([*base, "--connections", "1", "--requests", "300",
                                   "--duration", "4", "--reconnect"])
                runs[name].append({
                    "rep": rep, "rps": thr["rps"], "requests": thr["ok"],
                    "errors": thr["errors_total"] + lat["errors_total"],
                    "p50_us_c16": thr["latency_us"].get("p50"),
                    "p99_us_c16": thr["latency_us"].get("p99"),
                    "p50_us_c1": lat["latency_us"].get("p50"),
                    "p99_us_c1": lat["latency_us"].get("p99"),
                    "new_conn_p50_us": new["latency_us"].get("p50"),
                    "new_conn_p99_us": new["latency_us"].get("p99"),
                    "new_conn_errors": new["errors_total"],
                    "cpu_us_per_req": ((sum(c1) - sum(c0)) / thr["ok"] * 1e6
                                       if pid and thr["ok"] else None),
                    **per_req_split(c0, c1, thr["ok"] if pid else 0),
                    "peak_rss_kib": hwm_kib(pid) if pid else None,
                    "errors_detail": {**thr["errors"]}})
                log(f"s2 rep {rep} {name}: {thr['rps']:.0f} req/s, p50 c1 "
                    f"{lat['latency_us'].get('p50')} us, new conn p50 "
                    f"{new['latency_us'].get('p50')} us, errors {thr['errors_total']}")
            except (RuntimeError, subprocess.TimeoutExpired, KeyError) as e:
                log(f"s2 rep {rep} {name} failed: {e}")
                runs[name].append({"rep": rep, "failed": str(e)[:300]})
    summary: dict = {}
    for name, rs in runs.items():
        good = [r for r in rs if "failed" not in r]
        summary[name] = {k: median([r[k] for r in good]) for k in (
            "rps", "p50_us_c1", "p99_us_c1", "p50_us_c16", "p99_us_c16", "new_conn_p50_us",
            "new_conn_p99_us", "cpu_us_per_req", "user_cpu_us_per_req", "kernel_cpu_us_per_req",
            "peak_rss_kib", "errors")} if good else {
                "failed": True}
        summary[name]["threads"] = 2 if name.endswith("2t") else 1
        if good and summary[name].get("new_conn_p50_us") and summary[name].get("p50_us_c1"):
            summary[name]["new_conn_over_keepalive"] = (summary[name]["new_conn_p50_us"] /
                                                        summary[name]["p50_us_c1"])
    direct = summary.get("direct TLS", {})
    for name, s in summary.items():
        if name != "direct TLS" and s.get("p50_us_c1") is not None and direct.get("p50_us_c1"):
            s["added_p50_us"] = s["p50_us_c1"] - direct["p50_us_c1"]
    summary.get("direct TLS", {})["threads"] = 0
    ratios = ratios_vs(summary, {"1t": "okta-sidecar 1t", "2t": "okta-sidecar 2t"},
                       ("rps", "p50_us_c1", "new_conn_p50_us", "cpu_us_per_req", "peak_rss_kib"))
    return {"scenario": "https", "title": "Intercepted HTTPS (CONNECT + TLS)",
            "method": {"tool": "okta-loadgen (bench/loadgen.cpp), kept-alive connections",
                       "throughput": f"16 connections, {secs} s cap, <= 200000 requests",
                       "latency": "1 connection, <= 3000 requests, 3 s cap",
                       "new_connection": "1 connection, a new TCP + CONNECT + TLS handshake "
                       "(full, no resumption) + 1 request each time, <= 300, 4 s cap; the "
                       "leaf comes from the proxy's cache after the warm-up",
                       "upstream": "nginx 1 worker, TLS (EC P-256 test CA)",
                       "requests": f"GET {API_PATH} with an SSWS API token (Authorization)",
                       "mitmproxy": "reaches the upstream as localhost:PORT (it has no resolve "
                       "override); squid uses its own hosts_file"},
            "versions": {"squid": tool_version(["squid", "-v"]),
                         "mitmproxy": tool_version(["mitmdump", "--version"])},
            "runs": runs, "summary": summary, "ratios": ratios, "skipped": skipped}


# ------------------------------------------------------------------------------------------
# Scenario 3: rate-limit absorption against the Okta simulator

class Sim:
    def __init__(self, env: Env, window: float, limits: dict, plain_http: bool = False) -> None:
        self.env = env
        args = [sys.executable, os.path.join(ROOT, "tests", "support", "okta_sim.py"),
                "--port", "0", "--cert", env.pki.server_cert, "--key", env.pki.server_key,
                "--window", str(window)]
        for k, v in limits.items():
            args += ["--limit", f"{k}={v}"]
        if plain_http:
            args.append("--plain-http")
        self.proc = env.procs.start(args, stdout=subprocess.PIPE,
                                    log_file=env.path("sim.stderr.log"))
        line = self.proc.stdout.readline()
        info = json.loads(line)
        self.port, self.http_port = info["port"], info.get("http_port")
        self.ctx = ssl.create_default_context(cafile=env.pki.ca_cert)

    def control(self, method: str, cmd: str, body: Optional[dict] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}/__sim/{cmd}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=self.ctx))
        with opener.open(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.env.procs.stop(self.proc)


def run_client(env: Env, kind: str, sim: Sim, n: int, k: int, proxy_port: Optional[int],
               timeout: float) -> dict:
    if kind == "loop":
        args = [sys.executable, os.path.join(HERE, "clients", "retry_loop.py"), "--ca",
                env.pki.ca_cert, "--requests", str(n), "--workers", str(k),
                "--deadline", str(timeout)]
        if proxy_port:
            args += ["--host", f"127.0.0.1:{proxy_port}", "--tunnel", f"{OKTA_HOST}:443"]
        else:
            args += ["--host", f"127.0.0.1:{sim.port}"]
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 30)
    else:
        e = {k2: v for k2, v in os.environ.items() if "proxy" not in k2.lower()}
        e.update(N=str(n), K=str(k), NODE_EXTRA_CA_CERTS=env.pki.ca_cert)
        if proxy_port:
            e.update(ORG_URL=f"https://{OKTA_HOST}", HTTPS_PROXY=f"http://127.0.0.1:{proxy_port}")
        else:
            e.update(ORG_URL=f"https://127.0.0.1:{sim.port}")
        p = subprocess.run(["node", os.path.join(HERE, "clients", "okta_sdk_client.js")],
                           capture_output=True, text=True, timeout=timeout + 30, env=e, cwd=HERE)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{kind} client printed no result ({p.returncode}): {p.stderr[-600:]}")


def scenario_absorb(env: Env, reps: int) -> dict:
    a = env.args
    n, lim, win, k = a.absorb_requests, a.absorb_limit, a.absorb_window, a.absorb_workers
    theoretical = math.ceil(n / lim) * win
    # The first window is spent at once, so no client can finish before the last window opens.
    strict = max(win, (math.ceil(n / lim) - 1) * win)
    skipped: dict = {}
    sdk_ok = have("node") and os.path.isdir(os.path.join(HERE, "node_modules", "@okta",
                                                        "okta-sdk-nodejs"))
    if not sdk_ok:
        skipped["okta-sdk-nodejs"] = "node or bench/node_modules/@okta/okta-sdk-nodejs missing"
    sim = Sim(env, win, {"users": lim})
    clients = [("loop direct", "loop", False), ("loop via okta-sidecar", "loop", True)]
    if sdk_ok:
        clients[1:1] = [("okta-sdk-nodejs direct", "sdk", False)]
        clients.append(("okta-sdk-nodejs via okta-sidecar", "sdk", True))
    runs: dict = {c[0]: [] for c in clients}
    fair: dict = {"loop direct (2 clients)": [], "loop via okta-sidecar (2 clients)": []}
    timeout = theoretical * 4 + 30

    def one(label: str, kind: str, via: bool, count: int, workers: int, sidecar_port) -> dict:
        return run_client(env, kind, sim, count, workers, sidecar_port if via else None, timeout)

    for rep in range(reps):
        for label, kind, via in clients:
            sc = None
            try:
                sim.control("POST", "reset-stats")
                port = None
                if via:
                    sc, port, _ = env.start_sidecar(f"absorb-{rep}", 1, resolve={
                        f"{OKTA_HOST}:443": f"127.0.0.1:{sim.port}"})
                r = one(label, kind, via, n, k, port)
                st = sim.control("GET", "stats")
                r.update(upstream_requests=st["requests"], upstream_429=st["too_many_requests"],
                         theoretical_s=theoretical, ratio=r["completion_s"] / theoretical,
                         ratio_strict=r["completion_s"] / strict,
                         rep=rep)
                runs[label].append(r)
                log(f"s3 rep {rep} {label}: {r['completion_s']:.2f} s "
                    f"({r['ratio']:.3f}x), upstream 429 {r['upstream_429']}, "
                    f"client failures {r['failed']}")
            except (RuntimeError, subprocess.TimeoutExpired, KeyError, OSError) as e:
                log(f"s3 rep {rep} {label} failed: {e}")
                runs[label].append({"rep": rep, "failed_run": str(e)[:300]})
            finally:
                if sc:
                    env.procs.stop(sc)
        # fairness: two clients, each half the batch with half the workers, one bucket
        for label in fair:
            via = "sidecar" in label
            sc = None
            try:
                sim.control("POST", "reset-stats")
                port = None
                if via:
                    sc, port, _ = env.start_sidecar(f"fair-{rep}", 1, resolve={
                        f"{OKTA_HOST}:443": f"127.0.0.1:{sim.port}"})
                out: list = [None, None]

                def go(i: int) -> None:
                    out[i] = one(label, "loop", via, n // 2, max(1, k // 2), port)
                ts = [threading.Thread(target=go, args=(i,)) for i in range(2)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                if None in out:
                    raise RuntimeError("a fairness client failed")
                st = sim.control("GET", "stats")
                times = sorted(o["completion_s"] for o in out)
                fair[label].append({"rep": rep, "clients": out, "upstream_429": st[
                    "too_many_requests"], "completion_s": max(times),
                    "slow_over_fast": times[1] / times[0], "ratio": max(times) / theoretical,
                    "ratio_strict": max(times) / strict,
                    "failed": sum(o["failed"] for o in out)})
                log(f"s3 rep {rep} {label}: {times[0]:.2f}/{times[1]:.2f} s")
            except (RuntimeError, subprocess.TimeoutExpired, KeyError, OSError) as e:
                log(f"s3 rep {rep} {label} failed: {e}")
                fair[label].append({"rep": rep, "failed_run": str(e)[:300]})
            finally:
                if sc:
                    env.procs.stop(sc)
    sim.stop()
    summary: dict = {}
    for label, rs in {**runs, **fair}.items():
        good = [r for r in rs if "failed_run" not in r]
        if not good:
            summary[label] = {"failed": True}
            continue
        summary[label] = {
            "completion_s": median([r["completion_s"] for r in good]),
            "ratio": median([r["ratio"] for r in good]),
            "ratio_strict": median([r["ratio_strict"] for r in good]),
            "upstream_429": median([r["upstream_429"] for r in good]),
            "upstream_429_pct": median([100.0 * r["upstream_429"] / n for r in good]),
            "client_failures": median([r["failed"] for r in good]),
            "client_429": median([r["client_429"] for r in good]) if "client_429" in good[0]
            else median([sum(c["client_429"] for c in r["clients"]) for r in good]),
        }
        if "slow_over_fast" in good[0]:
            summary[label]["slow_over_fast"] = median([r["slow_over_fast"] for r in good])
    return {"scenario": "absorb", "title": "Rate-limit absorption (Okta simulator)",
            "method": {"requests": n, "limit": lim, "window_s": win, "workers": k,
                       "theoretical_min_s": theoretical, "strict_lower_bound_s": strict,
                       "definition": "theoretical minimum = ceil(N/L) windows x window length "
                       "(the issue's definition); the simulator's reset is the window end "
                       "rounded up to a whole second, as Okta's is",
                       "loop": "bench/clients/retry_loop.py: sleep until X-Rate-Limit-Reset, "
                       "up to 3 retries",
                       "sdk": "@okta/okta-sdk-nodejs (bench/package.json) with its default "
                       "retry (maxRetries 2, waits reset - Date + 1 s), cache disabled",
                       "fairness": "two loop clients at once, N/2 requests and K/2 workers each",
                       "client_visible_429": "for the SDK, retried 429s are counted as seen "
                       "by the client too (its 'backoff' events)"},
            "runs": {**runs, **fair}, "summary": summary, "skipped": skipped}


# ------------------------------------------------------------------------------------------
# Scenario 4: scale (RSS per idle connection, per queued request; admit after reset)

class Holder:
    """okta-loadgen kept running across phases (--wait-stdin / --hold)."""

    def __init__(self, env: Env, args: list) -> None:
        self.p = env.procs.start([env.loadgen_bin, *args], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, log_file=env.path("holder.log"))
        self.env = env

    def read_json(self, timeout: float) -> dict:
        box: list = []
        t = threading.Thread(target=lambda: box.append(self.p.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            raise RuntimeError("okta-loadgen gave no output in time")
        return json.loads(box[0])

    def next_phase(self) -> None:
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()

    def stop(self) -> None:
        try:
            self.next_phase()
        except OSError:
            pass
        self.env.procs.stop(self.p)


def admin_status(port: int) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/status", timeout=5) as r:
        return json.loads(r.read())


def queued_total(port: int) -> int:
    try:
        return sum(int(b.get("queued", 0)) for b in admin_status(port).get("buckets", []))
    except (OSError, ValueError):
        return -1


def scenario_scale(env: Env, reps: int) -> dict:
    if env.upstream is None:
        env.start_upstream()
    n = env.args.scale_connections
    runs: dict = {"idle_http": [], "idle_tls": [], "queued": []}
    for rep in range(reps):
        # -- idle kept-alive client connections, plain HTTP and intercepted TLS ---------------
        for kind in ("idle_http", "idle_tls"):
            sc = h = None
            try:
                if kind == "idle_http":
                    sc, port, _ = env.start_sidecar(f"scale-{kind}", 1, resolve={
                        f"{OKTA_HOST}:{env.up_http}": f"127.0.0.1:{env.up_http}"},
                        allowed_ports=(env.up_http,))
                    base = ["--target", f"http://{OKTA_HOST}:{env.up_http}{API_PATH}"]
                else:
                    sc, port, _ = env.start_sidecar(f"scale-{kind}", 1, resolve={
                        f"{OKTA_HOST}:443": f"127.0.0.1:{env.up_https}"})
                    base = ["--target", f"https://{OKTA_HOST}{API_PATH}", "--ca", env.pki.ca_cert]
                base += ["--proxy", f"127.0.0.1:{port}", "--header", f"Authorization: {OKTA_TOKEN}"]
                env.loadgen([*base, "--connections", "8", "--requests", "2000"])  # warm
                time.sleep(0.3)
                rss0 = rss_kib(sc.pid)
                h = Holder(env, [*base, "--connections", str(n), "--per-connection", "1",
                                 "--duration", "60", "--timeout", "30", "--hold"])
                res = h.read_json(120)
                time.sleep(0.5)
                rss1 = rss_kib(sc.pid)
                r = {"rep": rep, "connections": n, "ok": res["ok"], "errors": res["errors"],
                     "rss_before_kib": rss0, "rss_after_kib": rss1,
                     "per_connection_bytes": (rss1 - rss0) * 1024 / max(1, res["ok"]),
                     "setup_p50_us": res["connect_us"].get("p50")}
                runs[kind].append(r)
                log(f"s4 rep {rep} {kind}: {r['per_connection_bytes']:.0f} B/conn "
                    f"({res['ok']} ok, errors {res['errors']})")
            except (RuntimeError, subprocess.TimeoutExpired, KeyError, OSError) as e:
                log(f"s4 rep {rep} {kind} failed: {e}")
                runs[kind].append({"rep": rep, "failed_run": str(e)[:300]})
            finally:
                if h:
                    h.stop()
                if sc:
                    env.procs.stop(sc)
        # -- queued requests waiting for a reset -----------------------------------------------
        sc = h = sim = None
        try:
            window, limit = env.args.scale_window, n + 50
            sim = Sim(env, window, {"users": limit}, plain_http=True)
            sc, port, admin = env.start_sidecar("scale-queued", 1, resolve={
                f"{OKTA_HOST}:{sim.http_port}": f"127.0.0.1:{sim.http_port}"},
                allowed_ports=(sim.http_port,),
                extra={"rate_limit": {"max_queue": n * 2, "max_queue_total": n * 2, "max_wait_ms": 120000},
                       "client": {"request_timeout_ms": 180000}})
            target = ["--target", f"http://{OKTA_HOST}:{sim.http_port}{SIM_PATH}",
                      "--proxy", f"127.0.0.1:{port}", "--header", f"Authorization: {OKTA_TOKEN}"]
            time.sleep(0.3)
            rss_base = rss_kib(sc.pid)
            h = Holder(env, [*target, "--connections", str(n), "--per-connection", "1",
                             "--duration", str(window * 3 + 60), "--timeout", str(window * 3 + 60),
                             "--wait-stdin"])
            ev = h.read_json(120)
            if ev.get("connected") != n:
                raise RuntimeError(f"only {ev} connections")
            # The whole window's budget is spent behind the sidecar's back (a noisy neighbour);
            # one probe then meets the 429 that teaches the sidecar the bucket is empty.
            sim.control("POST", "consume", {"bucket": "users", "n": limit})
            probe_out: list = []
            probe = threading.Thread(target=lambda: probe_out.append(env.loadgen(
                [*target, "--connections", "1", "--requests", "1", "--duration",
                 str(window * 3), "--timeout", str(window * 3)], timeout=window * 3 + 30)),
                daemon=True)
            probe.start()
            t_end = time.time() + 10
            while time.time() < t_end and queued_total(admin) < 1:
                time.sleep(0.05)
            time.sleep(0.5)
            rss_conn = rss_kib(sc.pid)
            h.next_phase()
            t_end = time.time() + 30
            q = 0
            while time.time() < t_end:
                q = queued_total(admin)
                if q >= n:
                    break
                time.sleep(0.1)
            time.sleep(0.3)
            rss_queued = rss_kib(sc.pid)
            q_seen = queued_total(admin)
            win0 = sim.control("GET", "stats")["buckets"]["users"][0]
            res = h.read_json(window * 3 + 90)
            probe.join(window * 3)
            st = sim.control("GET", "stats")
            reset = win0["reset"]
            r = {"rep": rep, "requests": n, "queued_seen": q_seen, "ok": res["ok"],
                 "errors": res["errors"], "rss_connected_kib": rss_conn,
                 "rss_queued_kib": rss_queued,
                 "per_queued_bytes": (rss_queued - rss_conn) * 1024 / max(1, q_seen),
                 "per_connection_bytes": (rss_conn - rss_base) * 1024 / n,
                 # Issue 13's yardstick: a waiting request with its (plain) connection.
                 "per_waiting_bytes": ((rss_queued - rss_conn) * 1024 / max(1, q_seen) +
                                       (rss_conn - rss_base) * 1024 / n),
                 "reset_unix": reset,
                 "first_admit_after_reset_ms": (res["first_ok_unix"] - reset) * 1000,
                 "all_done_after_reset_s": res["last_ok_unix"] - reset,
                 "upstream_429": st["too_many_requests"], "window_s": window}
            runs["queued"].append(r)
            log(f"s4 rep {rep} queued: {r['per_queued_bytes']:.0f} B/queued request "
                f"(queued {q_seen}), first admit {r['first_admit_after_reset_ms']:.0f} ms after "
                f"reset, all done {r['all_done_after_reset_s']:.2f} s, ok {res['ok']}")
        except (RuntimeError, subprocess.TimeoutExpired, KeyError, OSError, ValueError) as e:
            log(f"s4 rep {rep} queued failed: {e}")
            runs["queued"].append({"rep": rep, "failed_run": str(e)[:300]})
        finally:
            if h:
                h.stop()
            if sc:
                env.procs.stop(sc)
            if sim:
                sim.stop()
    summary: dict = {}
    for kind, rs in runs.items():
        good = [r for r in rs if "failed_run" not in r]
        if not good:
            summary[kind] = {"failed": True}
            continue
        keys = [k for k, v in good[0].items() if isinstance(v, (int, float)) and k != "rep"]
        summary[kind] = {k: median([r.get(k) for r in good]) for k in keys}
    # The floor under the TLS figure: what OpenSSL itself keeps per idle server connection.
    probe = os.path.join(os.path.dirname(env.loadgen_bin), "okta-ssl-state")
    if os.access(probe, os.X_OK):
        p = subprocess.run([probe, "--connections", str(min(n, 5000))], capture_output=True, text=True,
                           timeout=120)
        if p.returncode == 0 and p.stdout.strip():
            summary["openssl_floor"] = json.loads(p.stdout.strip().splitlines()[-1])
            log(f"s4 OpenSSL floor: {summary['openssl_floor']['server_ssl_bytes_per_connection']} B/conn")
    return {"scenario": "scale", "title": "Scale: idle connections and queued requests",
            "method": {"connections": n, "sidecar_threads": 1,
                       "idle": "RSS of the sidecar after N client connections each did one "
                       "request and stay kept alive, minus RSS before (after a warm-up)",
                       "queued": "N connections opened first (RSS measured), the bucket's "
                       "window spent by a neighbour, then one request on each: RSS once "
                       "/status shows them queued, minus RSS with the connections open",
                       "admit": "first 2xx at the client minus the window's "
                       "X-Rate-Limit-Reset (whole epoch second)"},
            "runs": runs, "summary": summary, "skipped": {}}


# ------------------------------------------------------------------------------------------

SCENARIOS = {"plain": scenario_plain, "https": scenario_https, "absorb": scenario_absorb,
             "scale": scenario_scale}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sidecar", required=True)
    ap.add_argument("--loadgen", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0, help="throughput run cap")
    ap.add_argument("--absorb-requests", type=int, default=300)
    ap.add_argument("--absorb-limit", type=int, default=50)
    ap.add_argument("--absorb-window", type=float, default=2.0)
    ap.add_argument("--absorb-workers", type=int, default=10)
    ap.add_argument("--scale-connections", type=int, default=10000)
    ap.add_argument("--scale-window", type=float, default=12.0)
    ap.add_argument("--sidecar-log-level", default="warn")
    args = ap.parse_args()
    env = Env(args)
    os.makedirs(args.results, exist_ok=True)
    def on_signal(signum: int, _frame: Any) -> None:
        env.procs.stop_all()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    status = 0
    try:
        for name in args.scenario or list(SCENARIOS):
            t0 = time.time()
            load_before = list(os.getloadavg())
            log(f"scenario {name}: {args.reps} repetitions")
            try:
                res = SCENARIOS[name](env, args.reps)
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                log(f"scenario {name} failed: {e}")
                status = 1
                continue
            res.update(generated_unix=time.time(), duration_s=time.time() - t0,
                       repetitions=args.reps, machine=machine_info(),
                       loadavg_before=load_before,
                       sidecar_version=tool_version([args.sidecar, "--version"]))
            with open(os.path.join(args.results, f"{name}.json"), "w", encoding="utf-8") as f:
                json.dump(res, f, indent=1, sort_keys=True)
            log(f"scenario {name} done in {time.time() - t0:.0f} s")
    finally:
        env.procs.stop_all()
    return status


if __name__ == "__main__":
    sys.exit(main())
