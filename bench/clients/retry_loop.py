#!/usr/bin/env python3
"""The common client-side answer to Okta's 429: sleep until X-Rate-Limit-Reset, retry (<= 3).

Benchmark client for scenario 3 (bench/run). K worker threads share a batch of N GET requests
over kept-alive HTTPS connections, directly or through a CONNECT proxy. Prints one JSON line:
completion time, 429s seen by the client, retries, and client-visible failures (a request that
still got a 429 or an error after its retries).
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import threading
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True, help="host:port to connect to (or the proxy's)")
    ap.add_argument("--tunnel", help="host:port to CONNECT to through --host (a proxy)")
    ap.add_argument("--ca", required=True)
    ap.add_argument("--path", default="/api/v1/users?limit=1")
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--max-retries", type=int, default=3)
    ap.add_argument("--token", default="bench-token")
    ap.add_argument("--deadline", type=float, default=120.0, help="give up after this many s")
    args = ap.parse_args()

    ctx = ssl.create_default_context(cafile=args.ca)
    lock = threading.Lock()
    tickets = [args.requests]
    res = {"ok": 0, "failed": 0, "client_429": 0, "retries": 0, "errors": 0, "statuses": {}}
    t0 = time.time()
    stop_at = t0 + args.deadline

    def take() -> bool:
        with lock:
            if tickets[0] <= 0 or time.time() > stop_at:
                return False
            tickets[0] -= 1
            return True

    def connect() -> http.client.HTTPSConnection:
        host, _, port = args.host.rpartition(":")
        if args.tunnel:
            c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
            th, _, tp = args.tunnel.rpartition(":")
            c.set_tunnel(th, int(tp))
        else:
            c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
        return c

    def worker() -> None:
        conn = connect()
        while take():
            attempt = 0
            while True:
                try:
                    conn.request("GET", args.path, headers={"Authorization": f"SSWS {args.token}",
                                                            "Accept": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    status, reset = r.status, r.getheader("X-Rate-Limit-Reset")
                except (OSError, http.client.HTTPException):
                    with lock:
                        res["errors"] += 1
                    conn.close()
                    conn = connect()
                    status, reset = None, None
                with lock:
                    if status is not None:
                        res["statuses"][str(status)] = res["statuses"].get(str(status), 0) + 1
                    if status == 429:
                        res["client_429"] += 1
                if status == 429 and attempt < args.max_retries and reset:
                    attempt += 1
                    with lock:
                        res["retries"] += 1
                    time.sleep(max(0.0, float(reset) - time.time()))
                    continue
                with lock:
                    if status is not None and 200 <= status < 300:
                        res["ok"] += 1
                    else:
                        res["failed"] += 1
                break
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res["completion_s"] = time.time() - t0
    res["start_unix"], res["end_unix"] = t0, time.time()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
